"""A job dict written as a TOML job file, through tomlkit (tomllib reads TOML but cannot write it).

tomlkit rather than tomli_w because the file is for people: a per-frame series (a Parseq table) is written a row of
frames per line, each line commented with its first frame, so a reader finds frame 137 without counting, and the
file opens with comment lines; tomli_w writes neither comments nor chosen line breaks. Scalars come before tables
in every table, as TOML requires, and in the order the dict gives.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import tomlkit
from tomlkit.items import Array

from framefarm.errors import InputError

__all__ = ["to_toml"]

# Values per line of a long number series; a series of texts (prompts) is written one per line.
_ARRAY_ROW = 10


def to_toml(data: Mapping[str, Any], header: Sequence[str] = ()) -> str:
    """A job dict as a TOML document, with ``header`` lines as comments on top."""
    doc = tomlkit.document()
    lines = [line for text in header for line in text.splitlines()]
    for line in lines:
        doc.add(tomlkit.comment(line))
    if lines:
        doc.add(tomlkit.nl())
    _fill(doc, data, [])
    text = tomlkit.dumps(doc)
    # tomlkit writes an empty comment line as "# " and puts a blank line before each table: the same file, tidied.
    return "\n".join(line.rstrip() for line in text.splitlines()).strip("\n") + "\n"


def _fill(table: Any, data: Mapping[str, Any], path: list[str]) -> None:
    for key, value in data.items():
        if not isinstance(value, Mapping) and not _is_table_array(value):
            table.add(key, _value(value, ".".join([*path, key])))
    for key, value in data.items():
        if isinstance(value, Mapping):
            child = tomlkit.table()
            _fill(child, value, [*path, key])
            table.add(key, child)
        elif _is_table_array(value):
            tables = tomlkit.aot()
            for item in value:
                child = tomlkit.table()
                _fill(child, item, [*path, key])
                tables.append(child)
            table.add(key, tables)


def _value(value: Any, where: str) -> Any:
    _check(value, where)
    if isinstance(value, (list, tuple)) and len(value) > _ARRAY_ROW:
        return _long_array(value)
    return list(value) if isinstance(value, tuple) else value


def _check(value: Any, where: str) -> None:
    """Refuse what TOML (or a job file) cannot hold, naming the field: tomlkit would write ``nan`` and ``inf``,
    which no job field accepts, and fail with its own message on other types."""
    if isinstance(value, bool) or isinstance(value, (int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InputError(where, value, "must be a finite number")
        return
    if isinstance(value, (list, tuple)) and all(not isinstance(v, Mapping) for v in value):
        for item in value:
            _check(item, where)
        return
    raise InputError(where, value, "cannot be written as a TOML value")


def _long_array(values: Sequence[Any]) -> Array:
    row = 1 if any(isinstance(v, str) for v in values) else _ARRAY_ROW
    array = tomlkit.array()
    for start in range(0, len(values), row):
        items: list[Any] = []
        for value in values[start:start + row]:
            items += [value, tomlkit.ws(", ")]
        # "1.0, 2.0,  # 0": the last comma, then two spaces before the comment (the second from tomlkit).
        items[-1:] = [tomlkit.ws(","), tomlkit.ws(" ")]
        array.add_line(*items, indent="  ", comment=str(start), add_comma=False)
    array.add_line(indent="")
    return array


def _is_table_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and bool(value) and all(isinstance(v, Mapping) for v in value)
