"""Errors framefarm raises on purpose.

Two families, because the CLI maps them to different exit codes:

* :class:`InputError` — the user's input is wrong (a job file, a schedule, a CLI flag). Exit code 2.
  The message names the field, the bad value and what is allowed, in one readable paragraph.
* :class:`RenderError` — valid input, but the work failed (ffmpeg died, a model would not load). Exit code 1.

and :class:`RenderStopped`, which is neither: the user stopped the render (exit code 130).
"""

from __future__ import annotations


class FramefarmError(Exception):
    """Base class of every error framefarm raises deliberately."""


class _NoValue:
    """Marks "no value given" in an :class:`InputError`. Pickled by name, so an error sent from a render process
    to its parent still means "no value" there (a plain ``object()`` arrived as a new object and was printed as
    ``<object object at 0x…>``)."""

    def __repr__(self) -> str:
        return "<no value>"

    def __reduce__(self) -> str:
        return "_NO_VALUE"


_NO_VALUE = _NoValue()


class InputError(FramefarmError, ValueError):
    """Invalid user input: names the field, the value and the fix.

    Args:
        field: dotted path of the offending field (``"motion.zoom"``, ``"frames"``), or a short subject.
        value: the value as the user wrote it (shortened when long).
        problem: what is wrong with it, as a sentence fragment.
        fix: what to do instead (allowed values, an example).
    """

    def __init__(self, field: str, value: object = _NO_VALUE, problem: str = "is invalid", fix: str | None = None) -> None:
        self.field = field
        self.value = value
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if value is not _NO_VALUE:
            shown = repr(value)
            if len(shown) > 120:
                shown = shown[:117] + "..."
            message += f" (got {shown})"
        if fix:
            message += f". {fix}"
        super().__init__(message)


class RenderError(FramefarmError, RuntimeError):
    """The work itself failed (a renderer, ffmpeg, storage). Finished frames are kept."""


class RenderStopped(FramefarmError):
    """The render was asked to stop (Ctrl-C, SIGTERM). Not a failure: no worker is blamed, finished frames are
    kept, and the same command resumes the job."""


class WorkerPoolBroken(RenderError):
    """A process of the flow's process pool (``--gpus``) died and took the pool down with it: every chunk in flight
    failed with ``BrokenProcessPool``. Finished frames are kept; the CLI resumes on a fresh pool."""
