"""Extra ``framefarm`` sub-commands, one module each, so features add commands without editing ``cli.py``.

Each module defines ``register(app: typer.Typer) -> None`` and imports its heavy dependencies inside the command
functions (the CLI starts fast: ``framefarm presets`` should not import torch).
"""

from __future__ import annotations

import importlib
import pkgutil

import typer


def register_all(app: typer.Typer) -> None:
    """Register the commands of every module in this package, in name order."""
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(app)
