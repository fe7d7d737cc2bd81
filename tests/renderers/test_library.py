"""The model library: scanning, detection from weights, hashes, refusals, and loading through the real loader."""

from __future__ import annotations

import hashlib
import json
import shutil

import pytest
import torch

from framefarm.errors import InputError
from framefarm.renderers.models.library import ModelLibrary
from framefarm.renderers.models.loader import clear_cache, load_base, read_state_dict
from framefarm.renderers.models.safetensors_io import load_tensors, read_header


def entries_by_name(library: ModelLibrary) -> dict:
    return {e.name: e for e in library.entries}


def test_scan_lists_every_file_with_kind_base_and_status(tiny_library):
    entries = entries_by_name(ModelLibrary.scan(tiny_library.root))
    expected = {
        "tiny-sd15.safetensors": ("checkpoint", "SD1.5", "ok"),
        "tiny-sd15-diffusers": ("checkpoint", "SD1.5", "ok"),
        "tiny-sdxl.safetensors": ("checkpoint", "SDXL", "ok"),
        "tiny-canny.safetensors": ("controlnet", "SD1.5", "ok"),
        "tinylora.safetensors": ("lora", "SD1.5", "ok"),
        "tinystyle.safetensors": ("embedding", "SD1.5", "ok"),
        "tinyxl.safetensors": ("embedding", "SDXL", "ok"),
        "tiny-vae.safetensors": ("vae", "SD1.5/SDXL", "ok"),
        "legacy.ckpt": ("checkpoint", "?", "refused"),
        "broken.safetensors": ("checkpoint", "?", "damaged"),
    }
    for name, (kind, base, status) in expected.items():
        entry = entries[name]
        assert (entry.kind, entry.base, entry.status) == (kind, base, status), name
    assert "pickle" in entries["legacy.ckpt"].reason and "--allow-pickle" in entries["legacy.ckpt"].reason


def test_a_pickle_is_listed_refused_and_never_unpickled(tiny_library):
    library = ModelLibrary.scan(tiny_library.root)
    with pytest.raises(InputError, match=r"model.checkpoint: is refused: pickle file.*legacy\.ckpt"):
        library.find("checkpoint", "legacy", field="model.checkpoint")
    entry = next(e for e in library.entries if e.name == "legacy.ckpt")
    with pytest.raises(InputError, match="is refused"):
        read_state_dict(entry, allow_pickle=False)
    # Even opted in, only torch's weights-only unpickler runs: it refuses the payload's global (open).
    opted = next(e for e in ModelLibrary.scan(tiny_library.root, allow_pickle=True).entries if e.name == "legacy.ckpt")
    assert opted.status == "ok"
    with pytest.raises(InputError, match="could not be loaded with weights_only=True"):
        read_state_dict(opted, allow_pickle=True)
    assert not tiny_library.pickle_marker.exists()


def test_a_corrupt_safetensors_gives_an_error_naming_the_file(tiny_library, tmp_path):
    with pytest.raises(InputError, match=r"not a valid \.safetensors file: tensor .* truncated.*broken\.safetensors"):
        read_header(tiny_library.corrupt)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(InputError, match=r"header is not JSON.*garbage\.safetensors"):
        load_tensors(garbage)
    library = ModelLibrary.scan(tiny_library.root)
    with pytest.raises(InputError, match=r"is damaged: not a valid .* truncated.*broken\.safetensors"):
        library.find("checkpoint", "broken", field="model.checkpoint")


def test_short_hash_is_a1111_autov2(tiny_library):
    from framefarm.renderers.models.hashing import sha256_of, short_hash

    digest = hashlib.sha256(tiny_library.sd15.read_bytes()).hexdigest()
    assert sha256_of(tiny_library.sd15) == digest
    assert short_hash(tiny_library.sd15) == digest[:10]


def test_find_by_stem_relative_and_absolute_path(tiny_library):
    library = ModelLibrary.scan(tiny_library.root)
    by_stem = library.find("checkpoint", "tiny-sd15", field="f")
    assert by_stem.name == "tiny-sd15.safetensors"
    assert library.find("checkpoint", "tiny-sd15.safetensors", field="f") == by_stem
    assert library.find("checkpoint", str(tiny_library.sd15), field="f") == by_stem
    with pytest.raises(InputError, match="is not a lora in .*known lora names: tinylora.safetensors"):
        library.find("lora", "nope", field="prompts")


@pytest.mark.parametrize("name", ["sd15", "sdxl", "sd15_diffusers"])
def test_loaded_weights_equal_the_models_the_files_were_made_from(tiny_library, name):
    from tests.fixtures.tiny_models import build_sd15, build_sdxl

    library = ModelLibrary.scan(tiny_library.root)
    path = getattr(tiny_library, name)
    base = load_base(next(e for e in library.entries if e.path == str(path)))
    originals = build_sdxl(seed=10) if name == "sdxl" else build_sd15(seed=0)
    names = ("unet", "vae", "text_encoder", "text_encoder_2")
    for component, original in zip(names, originals):
        loaded = base.components[component].state_dict()
        for key, value in original.state_dict().items():
            assert torch.equal(loaded[key], value), f"{component}.{key}"
    assert base.family == ("SDXL" if name == "sdxl" else "SD1.5")


def test_the_base_model_is_cached_per_process(tiny_library):
    entry = ModelLibrary.scan(tiny_library.root).find("checkpoint", "tiny-sd15", field="f")
    first = load_base(entry)
    assert load_base(entry) is first
    clear_cache()
    assert load_base(entry) is not first


def test_cli_lists_models_with_refusals(tiny_library):
    from typer.testing import CliRunner

    from framefarm.cli import app

    result = CliRunner().invoke(app, ["models", "--dir", str(tiny_library.root), "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["name"]: row for row in json.loads(result.output)["models"]}
    assert rows["legacy.ckpt"]["status"] == "refused"
    assert rows["tiny-sdxl.safetensors"]["base"] == "SDXL"
    assert rows["tiny-sd15.safetensors"]["hash"] == hashlib.sha256(tiny_library.sd15.read_bytes()).hexdigest()[:10]
    table = CliRunner().invoke(app, ["models", "--dir", str(tiny_library.root)])
    assert table.exit_code == 0 and "refused" in table.output and "damaged" in table.output
    missing = CliRunner().invoke(app, ["models", "--dir", str(tiny_library.root / "nowhere")])
    assert missing.exit_code == 2


def test_a_lora_in_the_checkpoint_folder_is_still_a_lora(tiny_library, tmp_path):
    root = tmp_path / "lib"
    (root / "Stable-diffusion").mkdir(parents=True)
    shutil.copy(tiny_library.lora, root / "Stable-diffusion" / "oops.safetensors")
    entry = ModelLibrary.scan(root).entries[0]
    assert (entry.kind, entry.base) == ("lora", "SD1.5")
    assert "Stable-diffusion folder" in entry.reason


def test_model_input_hashes_cover_every_file_a_job_reads(models_dir, tiny_library):
    from framefarm.renderers.models.keys import model_input_hashes, model_short_hashes
    from tests.renderers.jobs import v2v_job

    job = v2v_job(models_dir, 'prompts.0="a tinystyle cat <lora:tinylora:0.5>"', 'model.vae="tiny-vae"')
    hashes = model_input_hashes(job)
    assert set(hashes) == {"model.checkpoint", "model.vae", "controlnet.0.model", "lora.tinylora",
                           "embedding.tinystyle"}
    assert hashes["model.checkpoint"] == hashlib.sha256(tiny_library.sd15.read_bytes()).hexdigest()
    assert model_short_hashes(job)["lora.tinylora"] == hashes["lora.tinylora"][:10]
    from framefarm.job import job_from_preset

    assert model_input_hashes(job_from_preset("zoom-tunnel")) == {}
