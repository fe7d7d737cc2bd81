"""The schedule evaluator runs no user code: everything outside its allow-list is refused at compile time, before
any evaluation. The API compares its token in constant time (``hmac.compare_digest``) on every route but /health."""

from __future__ import annotations

import hmac

import pytest

from framefarm.animation.keyframes import parse_schedule
from framefarm.animation.safe_math import MAX_DEPTH, MAX_LENGTH, compile_expression
from framefarm.errors import InputError

REFUSED = {
    "attribute access": "t.real",
    "dunder attribute": "t.__class__",
    "dunder name": "__import__",
    "import call": "__import__('os').system('true')",
    "builtins": "open('/etc/passwd')",
    "eval": "eval('1')",
    "lambda": "(lambda: 1)()",
    "list comprehension": "[x for x in (1, 2)]",
    "generator": "sum(x for x in (1, 2))",
    "dict comprehension": "{x: 1 for x in (1,)}",
    "subscript": "(1, 2)[0]",
    "string": "'a'",
    "bytes": "b'a'",
    "f-string": "f'{t}'",
    "walrus": "(x := 1)",
    "keyword argument": "sin(x=t)",
    "starred": "max(*t)",
    "huge constant power": "9**9**9",
    "huge power": "2**100000",
    "deep nesting of calls": "sin(" * (MAX_DEPTH + 5) + "t" + ")" * (MAX_DEPTH + 5),
    "deep nesting of operators": "-" * (MAX_DEPTH + 5) + "t",
    "deep nesting of brackets": "(t+" * (MAX_DEPTH + 5) + "1" + ")" * (MAX_DEPTH + 5),
    "very long": "1+" * (MAX_LENGTH // 2) + "1",
    "unknown name": "x",
    "assignment": "t = 1",
    "statement": "import os",
    "semicolon": "1; 2",
    "await": "await t",
    "yield": "(yield)",
    "conditional with call": "os.system('x') if t else 1",
    "format spec": "'{0.__class__}'.format(t)",
}


@pytest.mark.parametrize("text", REFUSED.values(), ids=REFUSED.keys())
def test_the_evaluator_refuses_what_is_not_on_its_allow_list(text):
    with pytest.raises(InputError) as err:
        compile_expression(text, field="motion.zoom")
    assert err.value.field == "motion.zoom"


@pytest.mark.parametrize("text", ["0:(t.__class__)", "0:(__import__('os'))", "0:([x for x in t])", "0:(9**9**9)",
                                  "0:(lambda: 1)", "0:(1), 10:(open('x'))"])
def test_refused_inside_keyframe_schedules_too(text):
    with pytest.raises(InputError, match="motion.zoom"):
        parse_schedule(text, frames=20, field="motion.zoom")


def test_allowed_expressions_still_work():
    expression = compile_expression("1.0025+0.002*sin(1.25*3.14*t/30)", field="motion.zoom")
    assert abs(float(expression.evaluate(t=0.0, max_f=10.0, s=1.0)) - 1.0025) < 1e-12


# ----- API token


@pytest.fixture()
def api_client(tmp_path, monkeypatch):
    from fastapi.testclient import TestClient

    from framefarm.api.app import ApiSettings, create_app

    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr("framefarm.api.app.hmac.compare_digest", recording)
    app = create_app(ApiSettings(token="s3cret-token-0123456789", out=str(tmp_path / "out"),
                                 state_dir=str(tmp_path / "state")))
    # No ``with``: the app's lifespan (the runner) is not started; only the routes' auth is exercised.
    return TestClient(app), calls


@pytest.mark.parametrize("given", ["wrong", "s3cret-token-012345678", "s3cret-token-0123456789x",
                                   "S3CRET-token-0123456789", ""])
def test_wrong_tokens_are_refused_through_compare_digest(api_client, given):
    client, calls = api_client
    for headers in ({"Authorization": f"Bearer {given}"}, {"X-API-Key": given}):
        response = client.get("/jobs", headers=headers)
        assert response.status_code == (401 if not given else 403)
    if given:  # every token given was checked through hmac.compare_digest, against the configured one
        assert calls and all(b == b"s3cret-token-0123456789" for _, b in calls)


def test_missing_token_is_401_and_health_needs_none(api_client):
    client, _ = api_client
    assert client.get("/jobs").status_code == 401
    assert client.get("/openapi.json").status_code == 401
    assert client.get("/health").status_code == 200


def test_the_right_token_passes(api_client):
    client, calls = api_client
    response = client.get("/openapi.json", headers={"Authorization": "Bearer s3cret-token-0123456789"})
    assert response.status_code == 200 and calls
