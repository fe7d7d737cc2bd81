"""Names and paths that come with jobs can't escape their roots: job names (the store folder), model references
(relative, absolute from prompt tags, through ``..``), and checkpoints that are pickles are refused unless the user
opts in, without ever being unpickled."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

from framefarm.errors import InputError
from framefarm.job import job_from_preset
from framefarm.renderers.models.library import ModelLibrary, open_library
from framefarm.storage import FrameStore

ESCAPING_NAMES = ["../evil", "..", ".", "/etc/passwd", "a/../../b", "a\\..\\b", "~root", "-rf", ".hidden", "",
                  "x" * 101, "name\x00null", "new\nline", "../" * 8 + "tmp"]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_job_names_that_could_escape_the_store_are_refused(name):
    with pytest.raises(InputError) as err:
        job_from_preset("zoom-tunnel", [f"name={name!r}".replace("'", '"')])
    assert "name" in str(err.value)


@pytest.mark.parametrize("name", ["../evil", "..", ".", "a/b", "a\\b", ""])
def test_the_frame_store_itself_refuses_folder_escapes(tmp_path, name):
    with pytest.raises(InputError, match="job name"):
        FrameStore(str(tmp_path), name)


class Payload:
    """A pickle that, when loaded, creates a file: the proof that a load ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture()
def models(tmp_path) -> Path:
    root = tmp_path / "models-root"
    for folder in ("models/Stable-diffusion", "models/Lora"):
        (root / folder).mkdir(parents=True)
    marker = tmp_path / "PWNED"
    for path in (root / "models/Stable-diffusion/evil.ckpt", root / "models/Lora/evil.pt"):
        path.write_bytes(pickle.dumps(Payload(marker)))
    (tmp_path / "outside.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{}      ")
    return root


def test_pickle_checkpoints_are_refused_by_default_and_never_unpickled(models):
    library = open_library(str(models))
    refused = {e.name: e for e in library.entries}
    assert all(e.status == "refused" and e.format == "pickle" for e in refused.values()), refused
    with pytest.raises(InputError, match="pickle file: loading it can run arbitrary code"):
        library.find("checkpoint", "evil", field="model.checkpoint")
    with pytest.raises(InputError, match="pickle"):
        library.find("lora", "evil", field="prompts <lora:…>")
    assert not (models.parent / "PWNED").exists()  # listing and refusing never ran the payload


def test_a_rendered_job_with_a_pickle_checkpoint_fails_before_loading(models, tmp_path):
    from framefarm.renderers.diffusers.components import load_components

    job = job_from_preset("video-restyle", [f'model.models_dir="{models}"', 'model.checkpoint="evil.ckpt"',
                                            "controlnet=[]"])
    with pytest.raises(InputError, match="model.checkpoint.*pickle"):
        load_components(job)
    assert not (models.parent / "PWNED").exists()


@pytest.mark.parametrize("ref", ["../outside.safetensors", "../../outside", "models/../../outside.safetensors",
                                 "models/Lora/../../../outside.safetensors"])
def test_relative_model_references_cannot_leave_the_models_folder(models, ref):
    library = ModelLibrary.scan(models)
    for kind, field in (("checkpoint", "model.checkpoint"), ("lora", "prompts <lora:…>"), ("vae", "model.vae")):
        with pytest.raises(InputError, match="points outside the models folder"):
            library.find(kind, ref, field=field)


def test_prompt_tags_cannot_name_absolute_paths_outside_the_models_folder(models):
    library = ModelLibrary.scan(models)
    outside = str(models.parent / "outside.safetensors")
    with pytest.raises(InputError, match="absolute path outside the models folder in a prompt tag"):
        library.find("lora", outside, field="prompts <lora:…>")


def test_a_symlink_inside_the_models_folder_cannot_be_used_to_climb_out(models):
    # A link planted in the models folder that points at the folder's parent: "link/outside…" resolves outside.
    (models / "models" / "Lora" / "up").symlink_to(models.parent, target_is_directory=True)
    library = ModelLibrary.scan(models)
    with pytest.raises(InputError, match="points outside the models folder"):
        library.find("lora", "models/Lora/up/outside.safetensors", field="prompts <lora:…>")
