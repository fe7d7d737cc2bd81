"""``framefarm models``: list the model library; ``framefarm models merge``: merge checkpoints (A1111's merger)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

DirOpt = Annotated[Optional[Path], typer.Option("--dir", help="Models folder (default: $FRAMEFARM_MODELS).")]
PickleOpt = Annotated[bool, typer.Option("--allow-pickle", help="Accept pickle files (.ckpt/.pt), loaded with "
                                                                 "torch.load(weights_only=True).")]


def models(
    ctx: typer.Context,
    models_dir: DirOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print as JSON.")] = False,
    allow_pickle: PickleOpt = False,
    no_hash: Annotated[bool, typer.Option("--no-hash", help="Skip hashing (fast listing of a big library).")]
    = False,
) -> None:
    """List every model file with its kind, base (SD1.5/SDXL, read from the weights), short hash and status.

    Files framefarm will not load are listed too, marked refused/unsupported/damaged, with why.
    """
    if ctx.invoked_subcommand is not None:
        return
    from rich.console import Console
    from rich.table import Table

    from framefarm.cli_output import fail
    from framefarm.errors import FramefarmError
    from framefarm.renderers.models.hashing import short_hash
    from framefarm.renderers.models.library import ModelLibrary, models_root

    try:
        root = models_root(str(models_dir) if models_dir else None)
        library = ModelLibrary.scan(root, allow_pickle=allow_pickle)
    except FramefarmError as exc:
        fail(exc)
    rows = []
    for entry in library.entries:
        rows.append({"kind": entry.kind, "base": entry.base, "name": entry.name, "format": entry.format,
                     "hash": "" if no_hash else short_hash(entry.path), "status": entry.status,
                     "reason": entry.reason, "path": entry.path})
    if as_json:
        typer.echo(json.dumps({"root": str(library.root), "models": rows}, indent=2))
        return
    table = Table(title=f"models in {library.root}")
    for column in ("kind", "base", "name", "hash", "status"):
        table.add_column(column, overflow="fold")
    for row in rows:
        status = row["status"] if row["status"] == "ok" else f"{row['status']}: {row['reason']}"
        if row["status"] == "ok" and row["reason"]:
            status = f"ok ({row['reason']})"
        table.add_row(row["kind"], row["base"], row["name"], row["hash"], status)
    Console(width=200).print(table)
    if not rows:
        typer.echo(f"no model files found under {library.root} (see docs/models.md for the folder layout)",
                   err=True)


def merge(
    a: Annotated[str, typer.Argument(help="Checkpoint A (a name in the models folder, or a path).")],
    b: Annotated[str, typer.Argument(help="Checkpoint B.")],
    c: Annotated[Optional[str], typer.Argument(help="Checkpoint C (add-difference only).")] = None,
    mode: Annotated[str, typer.Option("--mode", help="weighted-sum: A·(1−α)+B·α; add-difference: "
                                                     "A+(B−C)·α.")] = "weighted-sum",
    alpha: Annotated[float, typer.Option("--alpha", help="α, the share of B.")] = 0.3,
    out: Annotated[Path, typer.Option("-o", "--out", help="Output .safetensors file.")] = ...,  # type: ignore
    models_dir: DirOpt = None,
    allow_pickle: PickleOpt = False,
) -> None:
    """Merge checkpoints tensor by tensor (little memory, even for SDXL). Prints the output path last."""
    from framefarm.cli_output import fail
    from framefarm.errors import FramefarmError
    from framefarm.renderers.models.library import ModelLibrary, entry_for_path, models_root, require_usable
    from framefarm.renderers.models.merge import merge_checkpoints

    try:
        root = models_root(str(models_dir) if models_dir else None, required=False)
        library = ModelLibrary.scan(root, allow_pickle=allow_pickle) if root else None

        def resolve(ref: str, field: str):
            if library is not None and not Path(ref).is_file():
                return library.find("checkpoint", ref, field=field)
            return require_usable(entry_for_path(Path(ref).resolve(), "checkpoint", allow_pickle=allow_pickle),
                                  field)

        entries = [resolve(ref, name) for ref, name in ((a, "A"), (b, "B"))]
        third = resolve(c, "C") if c else None
        result = merge_checkpoints(entries[0], entries[1], third, mode=mode, alpha=alpha, out=out,
                                   allow_pickle=allow_pickle)
    except FramefarmError as exc:
        fail(exc)
    typer.echo(f"merged {result.merged} tensors, copied {result.copied} from A ({result.base})", err=True)
    typer.echo(str(result.path))


def register(app: typer.Typer) -> None:
    models_app = typer.Typer(help="The model library: list what framefarm can load; merge checkpoints.",
                             no_args_is_help=False)
    models_app.callback(invoke_without_command=True)(models)
    models_app.command("merge")(merge)
    app.add_typer(models_app, name="models")
