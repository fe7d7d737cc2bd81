"""How Deforum prints a backtick value: the type numexpr gives the expression, worked out from its syntax tree.

Deforum substitutes ``t`` and ``max_f`` into the text as integer literals and writes ``str(numexpr.evaluate(expr))``
into the prompt, so the *type* of the result decides the text: integer arithmetic stays integer (`` `t*2` `` at frame
0 is ``0``, not ``0.0``), true division and most functions give floats (``0.5``, ``1.0``), a bare comparison gives a
boolean (``True``), and ``where()`` — its condition a constant once ``t`` is a literal — gives the type of the branch
it picks, frame by frame. These are numexpr's rules, checked against numexpr 2.14 case by case. The expression has
already been validated by :mod:`framefarm.animation.safe_math`: the tree is only inspected here, and a ``where()``
condition is evaluated by that same safe evaluator.
"""

from __future__ import annotations

import ast
import functools
from typing import Any

import numpy as np

from framefarm.animation.safe_math import compile_expression

__all__ = ["BOOL", "FLOAT", "INT", "format_value", "result_kinds"]

# Kind codes, ordered so that "the wider of two numbers" is their maximum.
BOOL, INT, FLOAT = 0, 1, 2

_INTEGER_NAMES = frozenset({"t", "max_f", "s"})  # substituted as integer literals (s: framefarm's seed extension)
_SAME_KIND_FUNCTIONS = frozenset({"abs", "floor", "ceil", "round"})  # an integer argument stays integer
_WIDEST_FUNCTIONS = frozenset({"min", "max"})


def _numeric(kind: Any) -> Any:
    # numexpr promotes booleans to integers in arithmetic: (t>5)*10 is an integer.
    return np.maximum(kind, INT)


def _is_negative_constant(node: ast.AST) -> bool:
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
        return True
    return isinstance(node, ast.Constant) and isinstance(node.value, (int, float)) and node.value < 0


def _kind(node: ast.AST, env: dict[str, Any]) -> Any:
    """The kind code of ``node``: a number, or an array over frames where a ``where()`` picks per frame."""
    if isinstance(node, ast.Constant):
        return INT if isinstance(node.value, int) else FLOAT
    if isinstance(node, ast.Name):
        return INT if node.id in _INTEGER_NAMES else FLOAT  # pi, e
    if isinstance(node, ast.UnaryOp):
        return _numeric(_kind(node.operand, env))
    if isinstance(node, ast.Compare):
        return BOOL
    if isinstance(node, ast.BinOp):
        left, right = _kind(node.left, env), _kind(node.right, env)
        if isinstance(node.op, (ast.BitAnd, ast.BitOr)):
            return np.where((left == BOOL) & (right == BOOL), BOOL, np.maximum(_numeric(left), _numeric(right)))
        if isinstance(node.op, ast.Div):
            return FLOAT
        if isinstance(node.op, ast.Pow) and _is_negative_constant(node.right):
            return FLOAT  # numexpr: 2**-1 is 0.5
        return np.maximum(_numeric(left), _numeric(right))
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        name = node.func.id
        if name in _SAME_KIND_FUNCTIONS:
            return _numeric(_kind(node.args[0], env))
        if name in _WIDEST_FUNCTIONS:
            return functools.reduce(np.maximum, [_numeric(_kind(arg, env)) for arg in node.args])
        if name == "where":
            condition = compile_expression(ast.unparse(node.args[0]), field="where()",
                                           names=frozenset(env)).evaluate(**env)
            return np.where(np.not_equal(condition, 0.0), _kind(node.args[1], env), _kind(node.args[2], env))
        return FLOAT
    return FLOAT


def result_kinds(text: str, **env: Any) -> np.ndarray:
    """The kind code (:data:`BOOL`, :data:`INT`, :data:`FLOAT`) of ``text``'s value at each frame of ``env["t"]``.

    Args:
        text: an expression safe_math has accepted.
        **env: the values it is evaluated with (``t`` an array of frames, ``max_f``, ``s``).
    """
    shape = np.broadcast_shapes(*(np.shape(v) for v in env.values()))
    return np.broadcast_to(np.asarray(_kind(ast.parse(text.strip(), mode="eval").body, env)), shape)


def format_value(value: float, kind: int) -> str:
    """The value as Deforum writes it: ``str()`` of numexpr's integer, boolean or float result."""
    if kind == INT:
        return str(int(value))
    if kind == BOOL:
        return str(bool(value))
    return repr(float(value))  # Python's repr of a float is numpy's str of a 0-d float64 array
