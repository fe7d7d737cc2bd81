"""Tests for framefarm.animation.safe_math: the allow-list evaluator behind schedules, keys and prompt math."""

from __future__ import annotations

import ast
import math
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from framefarm.animation.safe_math import (
    FUNCTIONS,
    MAX_DEPTH,
    MAX_LENGTH,
    Expression,
    compile_expression,
)
from framefarm.errors import InputError

ANIMATION_DIR = Path(__file__).resolve().parents[2] / "framefarm" / "animation"
MY_MODULES = ("safe_math.py", "keyframes.py", "prompts.py", "seeds.py")


def ev(text: str, **variables):
    return compile_expression(text, field="test.field").evaluate(**variables)


class TestEvaluation:
    def test_deforum_default_zoom_matches_per_frame_math(self):
        t = np.arange(120)
        got = ev("1.0025+0.002*sin(1.25*3.14*t/30)", t=t)
        want = [1.0025 + 0.002 * math.sin(1.25 * 3.14 * i / 30) for i in range(120)]
        assert got.dtype == np.float64 and got.shape == (120,)
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-15)

    def test_scalar_in_scalar_out(self):
        value = ev("t*2+max_f-s", t=3, max_f=10, s=4)
        assert isinstance(value, float) and value == 12.0

    def test_integer_frames_use_true_division(self):
        np.testing.assert_array_equal(ev("t/2", t=np.arange(4)), [0.0, 0.5, 1.0, 1.5])

    def test_constant_is_broadcast_to_frames(self):
        got = ev("3", t=np.arange(5))
        np.testing.assert_array_equal(got, [3.0] * 5)
        got[0] = 99  # the result is a fresh writable array, not a view of a shared constant
        assert ev("3", t=np.arange(5))[0] == 3.0

    def test_comparisons_give_one_or_zero(self):
        np.testing.assert_array_equal(ev("(t>5)*10", t=np.arange(8)), [0, 0, 0, 0, 0, 0, 10, 10])
        np.testing.assert_array_equal(ev("t>=2", t=np.arange(4)), [0, 0, 1, 1])
        np.testing.assert_array_equal(ev("t==1", t=np.arange(3)), [0, 1, 0])
        np.testing.assert_array_equal(ev("t!=1", t=np.arange(3)), [1, 0, 1])

    def test_chained_comparison_is_elementwise_and(self):
        np.testing.assert_array_equal(ev("1 < t <= 3", t=np.arange(5)), [0, 0, 1, 1, 0])

    def test_logical_and_or(self):
        np.testing.assert_array_equal(ev("(t>1) & (t<3)", t=np.arange(5)), [0, 0, 1, 0, 0])
        np.testing.assert_array_equal(ev("(t<1) | (t>3)", t=np.arange(5)), [1, 0, 0, 0, 1])

    def test_operators(self):
        assert ev("7 % 3") == 1.0
        assert ev("-1 % 3") == 2.0  # numexpr/Python: the divisor's sign
        assert ev("7 // 2") == 3.0
        assert ev("2 ** 10") == 1024.0
        assert ev("-2 ** 2") == -4.0  # Python precedence: -(2**2)
        assert ev("+-+1") == -1.0

    def test_constants_pi_and_e(self):
        assert ev("pi") == math.pi
        assert ev("e") == math.e
        assert ev("sin(pi/2)") == 1.0

    @pytest.mark.parametrize("name", sorted(n for n, f in FUNCTIONS.items() if f.min_args == 1 == f.max_args))
    def test_every_unary_function(self, name):
        x = 0.5 if name != "arccosh" else 1.5
        expected = {"abs": abs, "round": round}.get(name) or getattr(np, name)
        assert ev(f"{name}({x})") == pytest.approx(float(expected(x)), rel=1e-15)

    def test_multi_argument_functions(self):
        assert ev("arctan2(1, 1)") == pytest.approx(math.pi / 4)
        np.testing.assert_array_equal(ev("where(t>1, 10, -10)", t=np.arange(3)), [-10, -10, 10])
        np.testing.assert_array_equal(ev("min(t, 2, 5-t)", t=np.arange(5)), [0, 1, 2, 2, 1])
        np.testing.assert_array_equal(ev("max(t, 2)", t=np.arange(4)), [2, 2, 2, 3])

    def test_round_is_half_to_even_like_python(self):
        assert [ev(f"round({x})") for x in (0.5, 1.5, 2.5, -0.5)] == [0.0, 2.0, 2.0, -0.0]

    def test_where_may_guard_a_division_by_zero(self):
        np.testing.assert_allclose(ev("where(t>0, 1/t, 0)", t=np.arange(4)), [0, 1, 0.5, 1 / 3])

    def test_broadcasting_two_arrays(self):
        got = ev("t + s", t=np.arange(3)[:, None], s=np.arange(2)[None, :])
        assert got.shape == (3, 2) and got[2, 1] == 3.0

    def test_metadata(self):
        expression = compile_expression("t + pi", field="motion.zoom")
        assert isinstance(expression, Expression)
        assert expression.names_used == frozenset({"t"}) and expression.constant is None
        assert compile_expression("2*3", field="x").constant == 6.0
        assert expression.field == "motion.zoom" and expression.text == "t + pi"

    def test_missing_variable_is_a_programming_error(self):
        with pytest.raises(TypeError, match=r"needs values for \['t'\]"):
            ev("t+1")

    def test_names_can_be_restricted(self):
        assert compile_expression("max_f/2", field="key", names=frozenset({"max_f"})).evaluate(max_f=9) == 4.5
        with pytest.raises(InputError, match=r"key: uses the name 't', which is not allowed here.*names max_f,"):
            compile_expression("t", field="key", names=frozenset({"max_f"}))


class TestRefusals:
    @pytest.mark.parametrize(
        ("text", "problem"),
        [
            ("__import__('os')", r"calls '__import__', which is not an allowed function"),
            ("().__class__", "attribute access"),
            ("t.real", "attribute access"),
            ("[1][0]", "Tuple|List|indexing"),
            ("(1, 2)", "Tuple"),
            ("lambda: 1", "lambda"),
            ("'a'", "not a number"),
            ("True", "not a number"),
            ("None", "not a number"),
            ("1j", "not a number"),
            ("x", "uses the name 'x'"),
            ("__builtins__", "uses the name '__builtins__'"),
            ("exec('1')", "calls 'exec'"),
            ("eval('1')", "calls 'eval'"),
            ("sin(x=1)", "keyword or starred"),
            ("abs(*t)", "keyword or starred"),
            ("sin(t, 2)", r"calls sin\(\) with 2 argument\(s\); it takes 1"),
            ("where(t, 1)", r"where\(\) with 2 argument\(s\); it takes 3"),
            ("max(t)", r"it takes at least 2"),
            ("t(1)", "calls 't'"),
            ("(lambda x: x)(1)", "not a plain function name"),
            ("t if t else 1", r"'if \.\.\. else'"),
            ("t and 1", "'and'/'or'"),
            ("not t", "UnaryOp|Not"),
            ("(y := 1)", "':=' assignment"),
            ("f'{t}'", "JoinedStr"),
            ("[i for i in t]", "ListComp"),
            ("~t", "UnaryOp"),
            ("t << 2", "BinOp|<<"),
            ("1/0", "evaluates to inf"),
            ("sqrt(-1)", "evaluates to nan"),
            ("1e999", "evaluates to inf"),
            ("9" * 400, "too large"),
            ("", "is empty"),
            ("   ", "is empty"),
            ("1 +", "not a valid expression"),
            ("1if t else 2", "not a valid expression: invalid decimal literal"),
            ("sin(t", "unbalanced parentheses"),
            ("t)", "unbalanced parentheses"),
            ("1\x00", "invalid characters|not a valid expression"),
        ],
    )
    def test_refused_with_field_value_and_allowed_list(self, text, problem):
        with pytest.raises(InputError, match=problem) as caught:
            compile_expression(text, field="motion.zoom")
        err = caught.value
        assert err.field == "motion.zoom" and err.value == text
        assert str(err).startswith("motion.zoom: ")
        assert "Allowed: numbers" in str(err) and "sin" in str(err)

    @pytest.mark.parametrize(
        "text",
        ["9**9**9", "2**99999", "t**-1e5", "(" * 1000 + "1" + ")" * 1000, "-" * 1999 + "1", "1+" * 999 + "1",
         "sin(" * 300 + "t" + ")" * 300, "[" * 900 + "]" * 900],
    )
    def test_hostile_input_fails_fast(self, text):
        # CPU time of this process, not wall time: the bound guards against super-linear work, and other
        # processes on a loaded test box must not trip it.
        started = time.process_time()
        with pytest.raises(InputError):
            compile_expression(text, field="f")
        assert time.process_time() - started < 0.5

    def test_power_guard_names_the_exponent(self):
        with pytest.raises(InputError, match=r"raises to the power 3\.8742e\+08; exponents beyond ±10000 are refused"):
            compile_expression("9**9**9", field="f")
        assert ev("2**t", t=3) == 8.0  # variable exponents are fine; overflow is caught at evaluation

    def test_depth_limit(self):
        ok = "(" * 20 + "t" + ")" * 20  # parentheses alone add no depth
        assert ev(ok, t=1) == 1.0
        with pytest.raises(InputError, match=f"nested more than {MAX_DEPTH} levels"):
            compile_expression("-" * (MAX_DEPTH + 5) + "t", field="f")

    def test_length_limit(self):
        text = "+".join(["1"] * 1001)  # 2001 characters
        assert len(text) > MAX_LENGTH
        with pytest.raises(InputError, match=f"is {len(text)} characters long, more than the {MAX_LENGTH} allowed"):
            compile_expression(text, field="f")

    def test_non_text_is_refused(self):
        with pytest.raises(InputError, match="must be an expression written as text"):
            compile_expression(3, field="f")  # type: ignore[arg-type]


class TestNotFinite:
    def test_division_by_zero_names_the_frame(self):
        with pytest.raises(InputError, match=r"motion\.zoom: evaluates to inf at frame t=0 .*got '1/t'.*where\(t>0"):
            compile_expression("1/t", field="motion.zoom").evaluate(t=np.arange(5))

    def test_overflow_names_the_first_bad_frame(self):
        with pytest.raises(InputError, match=r"evaluates to inf at frame t=1024"):
            ev("2**t", t=np.arange(2000))

    def test_domain_error(self):
        with pytest.raises(InputError, match=r"evaluates to nan at frame t=6"):
            ev("sqrt(5-t)", t=np.arange(10))
        with pytest.raises(InputError, match=r"evaluates to -inf at frame t=5"):
            ev("log(t-5)", t=np.arange(5, 9))

    def test_scalar_frame(self):
        with pytest.raises(InputError, match=r"at frame t=0"):
            ev("1/t", t=0)


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("t0123456789.+-*/%()<>=! _aeinsxqrw,:'\"[]")), max_size=40))
def test_any_text_gives_an_expression_or_input_error(text):
    # Fuzz: whatever the user writes, the only failure is an InputError (no SyntaxError, TypeError, RecursionError).
    try:
        expression = compile_expression(text, field="fuzz")
    except InputError:
        return
    try:
        result = expression.evaluate(t=np.arange(4, dtype=np.float64), max_f=3, s=7)
    except InputError:
        return
    assert np.all(np.isfinite(result))


_LEAVES = st.sampled_from(["t", "max_f", "s", "1", "2.5", "0.25", "pi"])


def _combine(children):
    binary = st.tuples(children, st.sampled_from(["+", "-", "*"]), children).map(lambda p: f"({p[0]} {p[1]} {p[2]})")
    call = st.tuples(st.sampled_from(["sin", "cos", "tanh", "abs"]), children).map(lambda p: f"{p[0]}({p[1]})")
    return binary | call


@settings(max_examples=200, deadline=None)
@given(st.recursive(_LEAVES, _combine, max_leaves=12))
def test_vectorised_equals_per_frame(text):
    # The whole-array result must equal evaluating frame by frame (what a naive Deforum loop does).
    expression = compile_expression(text, field="f")
    t = np.arange(6)
    whole = expression.evaluate(t=t, max_f=5, s=3)
    one_by_one = [expression.evaluate(t=int(i), max_f=5, s=3) for i in t]
    np.testing.assert_allclose(whole, one_by_one, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("module", MY_MODULES)
def test_no_dynamic_code_and_no_heavy_imports(module):
    # The animation room runs no user code and imports only numpy and the standard library (no torch/diffusers).
    tree = ast.parse((ANIMATION_DIR / module).read_text(encoding="utf-8"))
    calls = {n.func.id for n in ast.walk(tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
    assert not calls & {"eval", "exec", "compile", "__import__"}
    imported = {alias.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported <= {"__future__", "ast", "dataclasses", "functools", "math", "re", "warnings", "collections",
                        "typing", "numpy", "framefarm"}
