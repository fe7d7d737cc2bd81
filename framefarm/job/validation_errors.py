"""A pydantic :class:`~pydantic.ValidationError` on a job turned into one readable message: one line per bad field,
its value and what is allowed."""

from __future__ import annotations

from pydantic import ValidationError

from framefarm.errors import InputError
from framefarm.job.schema import KINDS


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message (got value)``; the job-kind prefix pydantic adds is dropped."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error["loc"]]
        if loc and loc[0] in KINDS:  # discriminated-union tag, not part of the user's field path
            loc = loc[1:]
        field = ".".join(loc) or "job"
        message = error["msg"]
        cause = (error.get("ctx") or {}).get("error")
        if isinstance(cause, InputError):  # raised by our own validators: already names field, value and fix
            lines.append(str(cause))
            continue
        if error["type"] == "string_pattern_mismatch" and loc == ["name"]:
            shown = repr(error.get("input"))[:80]
            lines.append(f"name: cannot be a folder name under --out (got {shown}). Use 1 to 100 letters, digits, "
                         "'.', '_' or '-', starting with a letter or digit (no '/' or '..'), e.g. my-tunnel")
            continue
        if error["type"] == "extra_forbidden":
            message = "is not a known field (a typo?)"
        elif error["type"] == "missing":
            message = "is required"
        elif message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        if error["type"] == "missing":
            lines.append(f"{field}: {message}")
        else:
            shown = repr(error.get("input"))
            if len(shown) > 80:
                shown = shown[:77] + "..."
            lines.append(f"{field}: {message} (got {shown})")
    count = len(lines)
    header = "1 problem" if count == 1 else f"{count} problems"
    return f"{header}:\n  " + "\n  ".join(lines)
