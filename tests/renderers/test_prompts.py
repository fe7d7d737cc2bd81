"""A1111 prompt syntax, the shipped CLIP tokenizer, and the prompt encoder on the tiny models."""

from __future__ import annotations

import pytest
import torch

from framefarm.errors import InputError
from framefarm.renderers.prompt_weights import WeightedText, extract_extra_networks, parse_attention


@pytest.mark.parametrize("text, expected", [
    ("a cat", [("a cat", 1.0)]),
    ("a (cat)", [("a ", 1.0), ("cat", 1.1)]),
    ("((cat))", [("cat", pytest.approx(1.21))]),
    ("[cat]", [("cat", pytest.approx(1 / 1.1))]),
    ("(cat:1.5) dog", [("cat", 1.5), (" dog", 1.0)]),
    (r"\(literal\) x", [("(literal) x", 1.0)]),
    ("a: b", [("a: b", 1.0)]),
    ("(open", [("open", pytest.approx(1.1))]),
    ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
    ("", [("", 1.0)]),
])
def test_attention_weights(text, expected):
    assert [(p.text, p.weight) for p in parse_attention(text)] == expected


def test_extra_network_tags_are_removed_and_returned():
    text, networks = extract_extra_networks("a cat <lora:style:0.7>, <lora:two:0.5:1.2> <hypernet:h>")
    assert text.strip(" ,") == "a cat"
    assert [(n.kind, n.name, n.te_weight, n.unet_weight) for n in networks] == [
        ("lora", "style", 0.7, 0.7), ("lora", "two", 0.5, 1.2), ("hypernet", "h", 1.0, 1.0)]
    with pytest.raises(InputError, match="not a number"):
        extract_extra_networks("<lora:x:lots>")


def test_the_shipped_tokenizer_is_clips():
    from framefarm.renderers.models.tokenizer import clip_tokenizer

    assert clip_tokenizer()("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(clip_tokenizer().get_vocab()) == 49408
    assert clip_tokenizer(pad_token="!").pad_token_id == 0


@pytest.fixture(scope="module")
def sd15(tiny_library):
    from framefarm.renderers.models.library import ModelLibrary
    from framefarm.renderers.models.loader import load_base

    library = ModelLibrary.scan(tiny_library.root)
    return library, load_base(library.find("checkpoint", "tiny-sd15", field="f"))


def encoder(sd15, clip_skip=1, embeddings=True):
    from framefarm.renderers.models.embeddings import load_embedding
    from framefarm.renderers.prompt_encode import PromptEncoder

    library, base = sd15
    found = {"tinystyle": load_embedding(library.find("embedding", "tinystyle", field="f"))} if embeddings else {}
    return PromptEncoder(base, found, clip_skip=clip_skip)


def test_chunks_of_75_tokens_and_break(sd15):
    enc = encoder(sd15)
    assert enc.encode("a cat").embeds.shape == (1, 77, 32)
    assert enc.encode("a cat BREAK a dog").embeds.shape == (1, 154, 32)
    assert enc.encode(", ".join(["cat"] * 60)).embeds.shape == (1, 154, 32)  # 119 tokens → 2 chunks
    short, long = enc.encode_many(["a cat", ", ".join(["cat"] * 60)])
    assert short.embeds.shape == long.embeds.shape == (1, 154, 32)  # padded to the batch's chunk count


def test_weights_embeddings_and_clip_skip_change_the_conditioning(sd15):
    enc = encoder(sd15)
    plain = enc.encode("a red cat").embeds
    assert not torch.equal(plain, enc.encode("a (red:1.4) cat").embeds)
    assert not torch.equal(plain, encoder(sd15, clip_skip=2).encode("a red cat").embeds)
    # The embedding's two vectors replace its name's tokens; without the file the name is plain text.
    with_embedding = enc.encode("a tinystyle cat").embeds
    as_text = encoder(sd15, embeddings=False).encode("a tinystyle cat").embeds
    assert not torch.equal(with_embedding, as_text)
    # Nothing was written into the shared tokenizer or text encoder.
    assert torch.equal(encoder(sd15).encode("a red cat").embeds, plain)


def test_an_sd15_embedding_in_an_sdxl_prompt_is_an_error(tiny_library):
    from framefarm.renderers.models.embeddings import load_embedding
    from framefarm.renderers.models.library import ModelLibrary
    from framefarm.renderers.models.loader import load_base
    from framefarm.renderers.prompt_encode import PromptEncoder

    library = ModelLibrary.scan(tiny_library.root)
    base = load_base(library.find("checkpoint", "tiny-sdxl", field="f"))
    good = PromptEncoder(base, {"tinyxl": load_embedding(library.find("embedding", "tinyxl", field="f"))})
    result = good.encode("a tinyxl fox")
    assert result.embeds.shape == (1, 77, 96) and result.pooled.shape == (1, 32)
    bad = PromptEncoder(base, {"tinystyle": load_embedding(library.find("embedding", "tinystyle", field="f"))})
    with pytest.raises(InputError, match="without vectors for clip_g"):
        bad.encode("a tinystyle fox")


def test_weighted_text_break_marker():
    assert WeightedText("BREAK", -1).is_break and not WeightedText("BREAK", 1.0).is_break
