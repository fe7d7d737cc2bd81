"""A1111 hypernetworks: refused without the pickle opt-in, applied to attention keys/values with it, restored exactly,
hashed into frame keys; malformed and malicious files fail with a clear error."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from framefarm.errors import InputError
from framefarm.renderers.models.keys import model_input_hashes
from tests.renderers.jobs import v2v_job
from tests.renderers.test_diffusers_renderer import max_diff, render


def a1111_layers(width: int, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One MLP of layer_structure [1, 2, 2, 1], relu, use_dropout: the layout A1111's trainer saves.

    A1111 builds Linear, ReLU, Dropout(0.3), Linear, ReLU, Linear: the dropout between the first two linears takes
    an index of its own, so the saved keys are linear.0, linear.3 and linear.5 (not 0, 2, 4)."""

    def linear(i: int, out: int, inp: int) -> dict[str, torch.Tensor]:
        return {f"linear.{i}.weight": 0.2 * torch.randn(out, inp, generator=generator),
                f"linear.{i}.bias": 0.05 * torch.randn(out, generator=generator)}

    return {**linear(0, 2 * width, width), **linear(3, 2 * width, 2 * width), **linear(5, width, 2 * width)}


def write_hypernetwork(path: Path, widths=(32, 64), **settings) -> Path:
    generator = torch.Generator().manual_seed(7)
    data = {width: [a1111_layers(width, generator), a1111_layers(width, generator)] for width in widths}
    data.update({"layer_structure": [1, 2, 2, 1], "activation_func": "relu", "is_layer_norm": False,
                 "use_dropout": True, "last_layer_dropout": False, "activate_output": False, "name": path.stem,
                 "step": 1000, **settings})
    torch.save(data, path)
    return path


@pytest.fixture(scope="module")
def hypernetworks(tiny_library) -> Path:
    folder = tiny_library.root / "models" / "hypernetworks"
    write_hypernetwork(folder / "tinyhyper.pt")
    bad = write_hypernetwork(folder / "tinybroken.pt")
    data = torch.load(bad, weights_only=True)
    data["layer_structure"] = [1, 3, 1]  # settings that don't match the saved tensors
    torch.save(data, bad)
    return folder


def test_a_hypernetwork_is_refused_without_the_pickle_opt_in(models_dir, hypernetworks):
    with pytest.raises(InputError) as caught:
        render(v2v_job(models_dir, 'prompts.0="a watercolor cat <hypernet:tinyhyper:1.0>"', frames=4,
                       controlnet=False))
    assert "allow_pickle" in str(caught.value)


def test_a_hypernetwork_changes_pixels_strength_zero_does_not_and_it_is_removed_exactly(models_dir, hypernetworks):
    opt_in = ("model.allow_pickle=true",)
    plain = render(v2v_job(models_dir, *opt_in, frames=4, controlnet=False))
    hyper = render(v2v_job(models_dir, *opt_in, 'prompts.0="a watercolor cat <hypernet:tinyhyper:1.0>"', frames=4,
                           controlnet=False))
    assert max_diff(plain, hyper) > 0
    # Strength 0 runs the hypernetwork processor with c + mlp(c)·0 = c: the same arithmetic as diffusers' own
    # attention, so the frames must be bit-identical (this pins the processor to AttnProcessor2_0's maths).
    zero = render(v2v_job(models_dir, *opt_in, 'prompts.0="a watercolor cat <hypernet:tinyhyper:0>"', frames=4,
                          controlnet=False))
    assert all(np.array_equal(plain[i], zero[i]) for i in plain)
    again = render(v2v_job(models_dir, *opt_in, frames=4, controlnet=False))
    assert all(np.array_equal(plain[i], again[i]) for i in plain)


def test_the_hypernetwork_file_is_part_of_the_frame_keys(models_dir, hypernetworks):
    job = v2v_job(models_dir, "model.allow_pickle=true", 'prompts.0="a cat <hypernet:tinyhyper:0.7>"', frames=4,
                  controlnet=False)
    hashes = model_input_hashes(job)
    assert len(hashes["hypernetwork.tinyhyper"]) == 64


def test_a_file_whose_tensors_do_not_match_its_settings_names_the_file(models_dir, hypernetworks):
    with pytest.raises(InputError) as caught:
        render(v2v_job(models_dir, "model.allow_pickle=true", 'prompts.0="a cat <hypernet:tinybroken:1>"', frames=4,
                       controlnet=False))
    assert "tinybroken" in str(caught.value) and "does not match" in str(caught.value)


class _RunsCode:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_a_malicious_hypernetwork_is_not_unpickled_even_with_the_opt_in(models_dir, hypernetworks, tmp_path):
    marker = tmp_path / "RAN"
    with open(hypernetworks / "tinyevil.pt", "wb") as handle:
        pickle.dump({32: _RunsCode(marker)}, handle)
    with pytest.raises(InputError) as caught:
        render(v2v_job(models_dir, "model.allow_pickle=true", 'prompts.0="a cat <hypernet:tinyevil:1>"', frames=4,
                       controlnet=False))
    assert "weights_only" in str(caught.value)
    assert not marker.exists()
