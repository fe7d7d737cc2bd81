"""Errors keep their meaning across a process boundary (a render process sends them to its parent by pickle)."""

from __future__ import annotations

import pickle

from framefarm.errors import InputError
from framefarm.flows.render_process import _pack_error, _unpack_error


def test_an_input_error_without_a_value_still_has_none_after_crossing_a_pipe():
    sent = InputError("model.checkpoint", problem="is not set", fix="Name a checkpoint")
    received = _unpack_error(pickle.loads(pickle.dumps(_pack_error(sent))))
    assert str(received) == str(sent) == "model.checkpoint: is not set. Name a checkpoint"
    assert "object at 0x" not in str(received)
