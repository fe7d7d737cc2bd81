"""Safe, vectorised arithmetic for schedule values, schedule keys and prompt backticks.

Deforum hands user text to ``numexpr.evaluate``; framefarm parses it with :func:`ast.parse` instead and accepts only
an allow-list of nodes (numbers, a few names, arithmetic, comparisons and a table of maths functions), so a job file
can never run code. Nothing here calls ``eval``, ``exec`` or ``compile``: the tree is turned into nested closures
over numpy operations, and ``t`` may be a whole array of frame indices, so one call evaluates every frame.

Differences from numexpr, on purpose:

* ``pi`` and ``e`` are constants here (framefarm extension; Deforum has neither: its users write ``3.14``).
* ``min``/``max`` are element-wise over two or more arguments and ``round`` rounds half to even (like Python's
  ``round`` and numpy's); numexpr has no such functions.
* ``//`` (floor division) and chained comparisons (``0 < t < 5``, element-wise "and") are allowed.
* ``&`` and ``|`` are logical and/or over "non-zero is true" values, giving 1.0/0.0 (numexpr: boolean and/or).
* A result that is not finite (``1/0``, ``log(0)``, ``sqrt(-1)``, overflow) is an :class:`InputError` naming the
  frame, where numexpr would quietly yield ``inf``/``nan`` and the render would go black.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from framefarm.errors import InputError

__all__ = [
    "CONSTANTS",
    "DEFAULT_NAMES",
    "FUNCTIONS",
    "MAX_CONSTANT_EXPONENT",
    "MAX_DEPTH",
    "MAX_LENGTH",
    "Expression",
    "compile_expression",
]

# Fail-fast limits. Real Deforum expressions are < 300 characters and < 15 levels deep (checked against published
# settings files); these leave ample room while keeping a hostile input cheap to refuse.
MAX_LENGTH = 2000
MAX_DEPTH = 50
# A constant exponent beyond this is refused before evaluation: no schedule needs ``x**10001``, and ``9**9**9`` is
# the classic way to make an evaluator hang (with Python ints; we use floats, which would give ``inf`` instead).
MAX_CONSTANT_EXPONENT = 1e4

DEFAULT_NAMES: frozenset[str] = frozenset({"t", "max_f", "s"})
CONSTANTS: Mapping[str, float] = {"pi": math.pi, "e": math.e}

Value = Any  # a float or a float64 ndarray; kept loose because numpy returns either
_Eval = Callable[[Mapping[str, Value]], Value]


@dataclasses.dataclass(frozen=True)
class _Function:
    """One entry of the function table: the numpy implementation and how many arguments it takes."""

    impl: Callable[..., Value]
    min_args: int
    max_args: int | None  # None: any number from min_args up


def _where(condition: Value, if_true: Value, if_false: Value) -> Value:
    # numexpr's where(): any non-zero condition counts as true.
    return np.where(np.not_equal(condition, 0.0), if_true, if_false)


def _elementwise(ufunc: np.ufunc) -> Callable[..., Value]:
    return lambda *args: functools.reduce(ufunc, args)


_UNARY = (
    "sin cos tan arcsin arccos arctan sinh cosh tanh arcsinh arccosh arctanh sqrt exp expm1 log log10 log1p floor ceil"
)
FUNCTIONS: Mapping[str, _Function] = {
    **{name: _Function(getattr(np, name), 1, 1) for name in _UNARY.split()},
    "abs": _Function(np.abs, 1, 1),
    "round": _Function(np.round, 1, 1),
    "arctan2": _Function(np.arctan2, 2, 2),
    "where": _Function(_where, 3, 3),
    "min": _Function(_elementwise(np.minimum), 2, None),
    "max": _Function(_elementwise(np.maximum), 2, None),
}

_BINARY_OPS: Mapping[type, Callable[[Value, Value], Value]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.true_divide,
    ast.Mod: np.mod,  # Python/numexpr semantics: the result has the divisor's sign
    ast.Pow: np.power,
    ast.FloorDiv: np.floor_divide,
    ast.BitAnd: lambda a, b: np.logical_and(np.not_equal(a, 0.0), np.not_equal(b, 0.0)).astype(np.float64),
    ast.BitOr: lambda a, b: np.logical_or(np.not_equal(a, 0.0), np.not_equal(b, 0.0)).astype(np.float64),
}
_COMPARE_OPS: Mapping[type, Callable[[Value, Value], Value]] = {
    ast.Lt: np.less,
    ast.LtE: np.less_equal,
    ast.Gt: np.greater,
    ast.GtE: np.greater_equal,
    ast.Eq: np.equal,
    ast.NotEq: np.not_equal,
}
_UNARY_OPS: Mapping[type, Callable[[Value], Value]] = {ast.UAdd: np.positive, ast.USub: np.negative}


class _Refused(Exception):
    """Raised inside the compiler; :func:`compile_expression` turns it into an :class:`InputError` with the field."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


def _allowed_help(names: frozenset[str]) -> str:
    variables = ", ".join(sorted(names)) or "none"
    return (
        f"Allowed: numbers, the names {variables}, the constants pi and e, the operators + - * / % ** // "
        f"and comparisons (< <= > >= == != give 1 or 0), and the functions {', '.join(sorted(FUNCTIONS))}. "
        f"Example: {'1.0025+0.002*sin(1.25*pi*t/30)' if 't' in names else 'max_f/2'}"
    )


@dataclasses.dataclass(frozen=True)
class _Program:
    """A compiled expression, independent of the field it came from (so compilations can be cached by text)."""

    run: _Eval
    names_used: frozenset[str]
    constant: float | None  # the value when the expression uses no variable


@functools.lru_cache(maxsize=4096)
def _compile_program(text: str, names: frozenset[str]) -> _Program:
    """Parse and validate ``text``; raises :class:`_Refused` (never SyntaxError or RecursionError)."""
    if len(text) > MAX_LENGTH:
        raise _Refused(f"is {len(text)} characters long, more than the {MAX_LENGTH} allowed")
    if not text.strip():
        raise _Refused("is empty")
    try:
        with warnings.catch_warnings():
            # "1if t else 2" or "5and t" parse with a SyntaxWarning; treat those as the syntax errors they are.
            warnings.simplefilter("error", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxWarning as err:
        raise _Refused(f"is not a valid expression: {err}") from None
    except SyntaxError as err:
        detail = err.msg or "invalid syntax"
        if text.count("(") != text.count(")"):
            detail = f"unbalanced parentheses ({text.count('(')} '(' but {text.count(')')} ')')"
        raise _Refused(f"is not a valid expression: {detail}") from None
    except (ValueError, RecursionError, MemoryError):  # null bytes, parser stack overflow
        raise _Refused("is not a valid expression (too deeply nested or contains invalid characters)") from None
    used: set[str] = set()
    run, constant = _compile_node(tree.body, names, used, depth=1)
    return _Program(run=run, names_used=frozenset(used), constant=constant)


def _constant(value: float) -> tuple[_Eval, float]:
    if not math.isfinite(value):
        raise _Refused(f"has a constant part that evaluates to {value} (division by zero, overflow or a domain error)")
    return (lambda env: value), value


def _fold(fn: Callable[..., Value], parts: list[tuple[_Eval, float | None]]) -> tuple[_Eval, float | None]:
    """Apply ``fn`` to compiled children; evaluate right away when every child is constant (constant folding)."""
    if all(const is not None for _, const in parts):
        with np.errstate(all="ignore"):
            return _constant(float(fn(*(const for _, const in parts))))
    runs = [run for run, _ in parts]
    if len(runs) == 1:
        (a,) = runs
        return (lambda env: fn(a(env))), None
    if len(runs) == 2:
        a, b = runs
        return (lambda env: fn(a(env), b(env))), None
    return (lambda env: fn(*(run(env) for run in runs))), None


def _compile_node(node: ast.AST, names: frozenset[str], used: set[str], depth: int) -> tuple[_Eval, float | None]:
    """Compile one allowed node into ``(closure, constant-or-None)``; refuse everything else."""
    if depth > MAX_DEPTH:
        raise _Refused(f"is nested more than {MAX_DEPTH} levels deep")
    sub = functools.partial(_compile_node, names=names, used=used, depth=depth + 1)

    if isinstance(node, ast.Constant):
        # bool is an int subclass: True/False are names in user text, not numbers.
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise _Refused(
                f"contains {node.value!r}, which is not a number (strings, True/False and None are not allowed)"
            )
        try:
            return _constant(float(node.value))
        except OverflowError:
            raise _Refused("contains a number too large for a 64-bit float") from None

    if isinstance(node, ast.Name):
        if node.id in names:
            used.add(node.id)
            name = node.id
            return (lambda env: env[name]), None
        if node.id in CONSTANTS:
            return _constant(CONSTANTS[node.id])
        raise _Refused(f"uses the name {node.id!r}, which is not allowed here")

    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY_OPS:
        return _fold(_UNARY_OPS[type(node.op)], [sub(node.operand)])

    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY_OPS:
        left, right = sub(node.left), sub(node.right)
        if isinstance(node.op, ast.Pow) and right[1] is not None and abs(right[1]) > MAX_CONSTANT_EXPONENT:
            limit = MAX_CONSTANT_EXPONENT
            raise _Refused(f"raises to the power {right[1]:g}; exponents beyond ±{limit:g} are refused")
        return _fold(_BINARY_OPS[type(node.op)], [left, right])

    if isinstance(node, ast.Compare) and all(type(op) in _COMPARE_OPS for op in node.ops):
        operands = [sub(node.left)] + [sub(c) for c in node.comparators]
        ops = [_COMPARE_OPS[type(op)] for op in node.ops]

        def compare_chain(*values: Value) -> Value:
            # a < b < c means (a < b) and (b < c), element-wise; the result is 1.0 or 0.0.
            result = ops[0](values[0], values[1])
            for i in range(1, len(ops)):
                result = np.logical_and(result, ops[i](values[i], values[i + 1]))
            return np.asarray(result, dtype=np.float64)

        return _fold(compare_chain, operands)

    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name):
            raise _Refused("calls something that is not a plain function name")
        fname = node.func.id
        if fname not in FUNCTIONS:
            raise _Refused(f"calls {fname!r}, which is not an allowed function")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _Refused(f"passes keyword or starred arguments to {fname}(), only plain positional ones are allowed")
        spec = FUNCTIONS[fname]
        count = len(node.args)
        if count < spec.min_args or (spec.max_args is not None and count > spec.max_args):
            wanted = str(spec.min_args) if spec.max_args == spec.min_args else f"at least {spec.min_args}"
            raise _Refused(f"calls {fname}() with {count} argument(s); it takes {wanted}")
        return _fold(spec.impl, [sub(a) for a in node.args])

    # Everything else: attributes, subscripts, lambdas, strings, containers, boolean keywords, conditionals, ...
    what = {
        ast.Attribute: "attribute access",
        ast.Subscript: "indexing",
        ast.Lambda: "a lambda",
        ast.BoolOp: "'and'/'or' (use * for and, where() for choices)",
        ast.IfExp: "'if ... else' (use where(condition, a, b))",
        ast.NamedExpr: "':=' assignment",
    }.get(type(node), f"a {type(node).__name__} ({ast.unparse(node)[:40]!r})")
    raise _Refused(f"contains {what}, which is not allowed")


@dataclasses.dataclass(frozen=True)
class Expression:
    """A validated expression, ready to evaluate on one frame or on an array of frames.

    Attributes:
        text (`str`): the expression as the user wrote it.
        field (`str`): the field it came from; named in every error.
        names_used (`frozenset[str]`): the variables it reads (a subset of the names allowed at compile time).
        constant (`float | None`): its value when it reads no variable, else ``None``.
    """

    text: str
    field: str
    _program: _Program = dataclasses.field(repr=False, compare=False)

    @property
    def names_used(self) -> frozenset[str]:
        return self._program.names_used

    @property
    def constant(self) -> float | None:
        return self._program.constant

    def evaluate(self, **variables: Any) -> np.ndarray | float:
        """Evaluate on scalars or arrays.

        Args:
            **variables: a value (number or numpy array) for every name the expression uses; arrays broadcast.
                ``t`` is the frame index (or an array of them).

        Returns:
            A float when every variable is a scalar, else a float64 array of the variables' broadcast shape (a
            constant expression is broadcast too).

        Raises:
            TypeError: a variable the expression uses was not passed (a programming error, not user input).
            InputError: the result is not finite (``1/t`` at ``t=0``, ``log(0)``, overflow) at some frame.
        """
        missing = self.names_used - variables.keys()
        if missing:
            raise TypeError(f"Expression.evaluate() needs values for {sorted(missing)} to evaluate {self.text!r}")
        env = {
            k: np.asarray(v, dtype=np.float64) if isinstance(v, np.ndarray) else float(v) for k, v in variables.items()
        }
        shape = np.broadcast_shapes(*(np.shape(v) for v in env.values()))
        # Intermediate inf/nan are allowed (where(t>0, 1/t, 0) is fine); only the final result is checked.
        with np.errstate(all="ignore"):
            result = self._program.run(env)
        result = np.broadcast_to(np.asarray(result, dtype=np.float64), shape)
        finite = np.isfinite(result)
        if not finite.all():
            self._raise_not_finite(result, finite, env)
        if result.ndim == 0:
            return float(result)
        return np.array(result)  # a fresh, writable array (broadcast_to returns a read-only view)

    def _raise_not_finite(self, result: np.ndarray, finite: np.ndarray, env: Mapping[str, Value]) -> None:
        index = int(np.flatnonzero(~finite.ravel())[0])
        bad = result.ravel()[index]
        where_text = ""
        if "t" in env:
            t = np.broadcast_to(env["t"], result.shape).ravel()[index]
            where_text = f" at frame t={t:g}"
        raise InputError(
            self.field,
            self.text,
            f"evaluates to {bad}{where_text} (division by zero, log/sqrt of a negative or zero, or overflow)",
            "Change the expression so it stays finite on every frame it covers, e.g. guard with where(t>0, 1/t, 0)",
        )


def compile_expression(text: str, *, field: str, names: frozenset[str] = DEFAULT_NAMES) -> Expression:
    """Parse and validate an expression without running any user code.

    Args:
        text (`str`): the expression, e.g. ``"1.0025+0.002*sin(1.25*3.14*t/30)"``.
        field (`str`): the field it came from, named in errors (``"motion.zoom"``).
        names (`frozenset[str]`, *optional*, defaults to ``{"t", "max_f", "s"}``): the variables it may read.
            ``pi`` and ``e`` are always available as constants unless shadowed by a variable of that name.

    Returns:
        An :class:`Expression`.

    Raises:
        InputError: anything outside the allow-list (attributes, subscripts, lambdas, strings, unknown names or
            functions, keyword arguments), a syntax error or unbalanced parentheses, more than
            :data:`MAX_LENGTH` characters or :data:`MAX_DEPTH` levels, a constant exponent beyond
            :data:`MAX_CONSTANT_EXPONENT`, or a constant part that is not finite.
    """
    if not isinstance(text, str):
        raise InputError(field, text, "must be an expression written as text", _allowed_help(names))
    try:
        program = _compile_program(text, frozenset(names))
    except _Refused as err:
        raise InputError(field, text, err.problem, _allowed_help(frozenset(names))) from None
    return Expression(text=text, field=field, _program=program)
