"""Coherence ops: colour matching, contrast, anti-blur, noise and cadence in-betweens, on real numpy images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from framefarm.animation.coherence import (
    FLOW_METHODS,
    adjust_contrast,
    add_noise,
    cadence_blend,
    cadence_flow_blend,
    color_reference_index,
    force_grayscale,
    match_colors,
    match_histogram,
    optical_flow,
    perlin_noise,
    unsharp_mask,
    warp_by_flow,
)
from framefarm.errors import InputError

RNG = np.random.default_rng(11)


def smooth_image(height=96, width=128, seed=0, sigma=3.0) -> np.ndarray:
    noise = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return cv2.GaussianBlur(noise, (0, 0), sigma)


def gradient(height=64, width=64) -> np.ndarray:
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    return np.clip(np.concatenate([np.broadcast_to(x, (height, width, 1)), np.broadcast_to(y, (height, width, 1)),
                                   np.broadcast_to((x + y) / 2, (height, width, 1))], axis=2), 0, 255).astype(np.uint8)


def quantile_reference(channel: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Histogram matching the slow, obvious way: for each distinct source value, its CDF (share of pixels at or
    below it), then the reference value at that CDF, linearly between the reference's distinct values."""
    values, counts = np.unique(channel, return_counts=True)
    ref_values, ref_counts = np.unique(reference, return_counts=True)
    cdf = np.cumsum(counts) / channel.size
    ref_cdf = np.cumsum(ref_counts) / reference.size
    mapped = {}
    for value, q in zip(values, cdf):
        mapped[value] = np.interp(q, ref_cdf, ref_values)
    return np.vectorize(mapped.get)(channel).astype(np.float64)


class TestColorMatch:
    def test_histogram_matching_equals_the_quantile_definition(self):
        source = RNG.integers(0, 200, (40, 50), dtype=np.uint8)
        reference = (RNG.random((30, 20)) ** 2 * 255).astype(np.uint8)
        np.testing.assert_allclose(match_histogram(source, reference), quantile_reference(source, reference))

    def test_rgb_mode_gives_the_reference_histogram(self):
        image, reference = smooth_image(seed=1), smooth_image(seed=2)
        reference[..., 0] = reference[..., 0] // 2 + 128  # a red cast
        got = match_colors(image, reference, "RGB")
        for c in range(3):
            np.testing.assert_allclose(np.percentile(got[..., c], [10, 50, 90]),
                                       np.percentile(reference[..., c], [10, 50, 90]), atol=2)

    @pytest.mark.parametrize("mode", ["RGB", "HSV", "LAB"])
    def test_matching_to_itself_changes_nothing(self, mode):
        image = smooth_image(seed=3)
        got = match_colors(image, image, mode)
        assert np.abs(got.astype(int) - image).max() <= (0 if mode == "RGB" else 3)  # colour-space round trips

    @pytest.mark.parametrize("mode", ["LAB", "HSV", "RGB"])
    def test_a_colour_cast_moves_toward_the_reference_in_rgb_order(self, mode):
        # A warm (red) reference must make the image redder and not bluer. Deforum hands BGR pixels to the RGB
        # conversions, which makes LAB/HSV matching push the wrong channels; here the pixels are RGB throughout.
        image = smooth_image(seed=4)
        reference = image.copy()
        reference[..., 0] = np.clip(reference[..., 0].astype(int) + 60, 0, 255)
        reference[..., 2] = np.clip(reference[..., 2].astype(int) - 40, 0, 255)
        got = match_colors(image, reference, mode).astype(float)
        assert got[..., 0].mean() > image[..., 0].mean() + 20
        assert got[..., 2].mean() < image[..., 2].mean() - 10

    @pytest.mark.parametrize("mode", ["RGB", "HSV", "LAB"])
    @pytest.mark.parametrize("seeds", [(5, 6), (7, 8), (9, 9)])
    def test_same_bytes_as_scikit_image(self, mode, seeds):
        # Deforum's maintain_colors: convert both frames, skimage's match_histograms per channel (8-bit in, 8-bit out:
        # the float result truncated toward zero), convert back. framefarm must give those bytes exactly.
        from skimage.exposure import match_histograms

        image, reference = smooth_image(seed=seeds[0]), smooth_image(seed=seeds[1], height=80, width=72)
        reference[..., 1] = reference[..., 1] // 3 + 90  # a green cast, so every channel really moves
        codes = {"RGB": None, "HSV": (cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB),
                 "LAB": (cv2.COLOR_RGB2LAB, cv2.COLOR_LAB2RGB)}[mode]
        if codes is None:
            expected = match_histograms(image, reference, channel_axis=-1)
        else:
            matched = match_histograms(cv2.cvtColor(image, codes[0]), cv2.cvtColor(reference, codes[0]),
                                       channel_axis=-1)
            expected = cv2.cvtColor(matched, codes[1])
        assert expected.dtype == np.uint8
        got = match_colors(image, reference, mode)
        np.testing.assert_array_equal(got, expected)

    def test_matched_values_are_floored_not_rounded(self):
        # skimage writes the matched floats into a uint8 array, which truncates: 8.57 becomes 8, not 9.
        image, reference = smooth_image(seed=12), smooth_image(seed=13)
        matched = match_histogram(image[..., 0], reference[..., 0])
        assert (np.floor(matched) != np.rint(matched)).mean() > 0.2  # the two really differ on this frame
        np.testing.assert_array_equal(match_colors(image, reference, "RGB")[..., 0], np.floor(matched))

    def test_refuses_bad_input(self):
        with pytest.raises(InputError, match="color_coherence.mode"):
            match_colors(smooth_image(), smooth_image(), "XYZ")  # type: ignore[arg-type]
        with pytest.raises(InputError, match="must be an RGB uint8 image"):
            match_colors(smooth_image().astype(np.float32), smooth_image())

    def test_reference_frame_of_a_video_every_n(self):
        assert [color_reference_index(i, 3) for i in range(7)] == [0, 0, 0, 3, 3, 3, 6]
        assert [color_reference_index(i, 1) for i in range(3)] == [0, 1, 2]

    def test_grayscale(self):
        out = force_grayscale(smooth_image())
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()


class TestContrast:
    def test_multiplies_rounds_and_clips(self):
        image = np.array([[[0, 100, 200], [255, 10, 171]]], np.uint8)
        # 1.5x: 150, 300 → 255 (Deforum's uint8 cast would wrap 300 to 44), 382.5 → 255, 15, 256.5 → 255.
        np.testing.assert_array_equal(adjust_contrast(image, 1.5), [[[0, 150, 255], [255, 15, 255]]])
        # 0.5x: 50, 100, 127.5 → 128 (half to even), 5.
        np.testing.assert_array_equal(adjust_contrast(image, 0.5), [[[0, 50, 100], [128, 5, 86]]])
        np.testing.assert_array_equal(adjust_contrast(image, 1.0), image)

    def test_negative_contrast_is_refused(self):
        with pytest.raises(InputError, match="motion.contrast"):
            adjust_contrast(smooth_image(), -1)


class TestAntiBlur:
    def test_formula(self):
        image = smooth_image(seed=5)
        blurred = cv2.GaussianBlur(image, (5, 5), 1.0).astype(float)
        want = np.clip(np.rint(1.3 * image - 0.3 * blurred), 0, 255)
        np.testing.assert_array_equal(unsharp_mask(image, 5, 1.0, 0.3), want)

    def test_flat_image_is_unchanged_and_edges_get_sharper(self):
        flat = np.full((32, 32, 3), 90, np.uint8)
        np.testing.assert_array_equal(unsharp_mask(flat, 5, 1.0, 1.0), flat)
        step = np.zeros((32, 32, 3), np.uint8)
        step[:, 16:] = 200
        out = unsharp_mask(cv2.GaussianBlur(step, (5, 5), 1.0), 5, 1.0, 1.0).astype(int)
        assert out[0, 17, 0] > 200 - 1 and out[0, 14, 0] == 0  # overshoot on the bright side, clipped dark side

    def test_amount_zero_is_the_identity(self):
        image = smooth_image()
        np.testing.assert_array_equal(unsharp_mask(image, 4 + 1, 1.0, 0.0), image)

    def test_threshold_leaves_low_contrast_pixels_alone(self):
        image = smooth_image(seed=6)
        blurred = cv2.GaussianBlur(image, (5, 5), 1.0).astype(int)
        out = unsharp_mask(image, 5, 1.0, 2.0, threshold=3)
        low = np.abs(image.astype(int) - blurred) < 3
        assert low.any() and (~low).any()
        np.testing.assert_array_equal(out[low], image[low])
        full = unsharp_mask(image, 5, 1.0, 2.0)
        np.testing.assert_array_equal(out[~low], full[~low])

    @pytest.mark.parametrize("kernel", [4, 0, -3, 2.5, True])
    def test_kernel_must_be_odd_and_positive(self, kernel):
        with pytest.raises(InputError, match="kernel: must be an odd whole number ≥ 1"):
            unsharp_mask(smooth_image(), kernel, 1.0, 0.5)

    @pytest.mark.parametrize("name", ["sigma", "amount", "threshold"])
    def test_negative_parameters_are_refused(self, name):
        args = {"sigma": 1.0, "amount": 0.5, "threshold": 0.0} | {name: -1.0}
        with pytest.raises(InputError, match=f"anti_blur.{name}"):
            unsharp_mask(smooth_image(), 5, **args)


class TestNoise:
    def test_same_seed_same_noise_other_seed_other_noise(self):
        image = smooth_image()
        a, b, c = add_noise(image, 0.3, 1), add_noise(image, 0.3, 1), add_noise(image, 0.3, 2)
        np.testing.assert_array_equal(a, b)
        assert (a != c).mean() > 0.5

    def test_amount_zero_is_the_identity_and_one_is_pure_noise(self):
        image = smooth_image()
        np.testing.assert_array_equal(add_noise(image, 0.0, 3), image)
        pure = add_noise(np.zeros_like(image), 1.0, 3, noise_type="uniform").astype(float)
        # clip(0.5 + 0.5 n) * 255 = 127.5 * (1 + clip(n, -1, 1)) with n ~ N(0, 1): mean 127.5; E[clip(n)²] =
        # P(|n|<1) - 2 φ(1) + P(|n|>1) = 0.6827 - 0.4839 + 0.3173 = 0.516, so the std is 127.5 * 0.718 = 91.6.
        assert abs(pure.mean() - 127.5) < 2 and 88 < pure.std() < 95

    def test_blend_weight(self):
        image = np.full((64, 64, 3), 200, np.uint8)
        out = add_noise(image, 0.25, 4, noise_type="uniform").astype(float)
        assert abs(out.mean() - (0.75 * 200 + 0.25 * 127.5)) < 1.5

    def test_perlin_modulates_the_grain(self):
        image = np.full((128, 128, 3), 128, np.uint8)
        uniform = add_noise(image, 1.0, 5, noise_type="uniform").astype(float)
        perlin = add_noise(image, 1.0, 5, noise_type="perlin").astype(float)
        # (perlin + 1) / 2 ≤ ~1 scales the Gaussian down: less spread overall, and it varies from patch to patch.
        assert perlin.std() < uniform.std()
        def spread(image):  # how much the grain's strength varies between 16x16 patches
            patches = image[..., 0].reshape(8, 16, 8, 16).std(axis=(1, 3))
            return patches.std() / patches.mean()

        assert spread(perlin) > 3 * spread(uniform)

    def test_perlin_noise_range_and_determinism(self):
        a = perlin_noise(50, 70, rng=np.random.default_rng(0), octaves=3)
        b = perlin_noise(50, 70, rng=np.random.default_rng(0), octaves=3)
        np.testing.assert_array_equal(a, b)
        assert a.shape == (50, 70) and -2 < a.min() < 0 < a.max() < 2

    def test_bad_input(self):
        with pytest.raises(InputError, match="motion.noise"):
            add_noise(smooth_image(), 1.5, 0)
        with pytest.raises(InputError, match="noise_type"):
            add_noise(smooth_image(), 0.5, 0, noise_type="pink")  # type: ignore[arg-type]


def moving_pair(shift=6):
    image = smooth_image(seed=7, sigma=1.5)  # enough texture for every flow method
    moved = cv2.warpAffine(image, np.float32([[1, 0, shift], [0, 1, 0]]), image.shape[1::-1],
                           borderMode=cv2.BORDER_REFLECT)
    halfway = cv2.warpAffine(image, np.float32([[1, 0, shift / 2], [0, 1, 0]]), image.shape[1::-1],
                             borderMode=cv2.BORDER_REFLECT)
    return image, moved, halfway


CENTRE = (slice(20, -20), slice(20, -20))


class TestCadence:
    def test_linear_blend(self):
        a, b = np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 200, np.uint8)
        np.testing.assert_array_equal(cadence_blend(a, b, 0.0), a)
        np.testing.assert_array_equal(cadence_blend(a, b, 1.0), b)
        np.testing.assert_array_equal(cadence_blend(a, b, 0.25), np.full((4, 4, 3), 50))

    @pytest.mark.parametrize("method", FLOW_METHODS)
    def test_flow_finds_the_motion(self, method):
        image, moved, _ = moving_pair()
        flow = optical_flow(image, moved, method)
        assert flow.shape == image.shape[:2] + (2,)
        assert abs(float(np.median(flow[CENTRE][..., 0])) - 6) < 0.8
        assert abs(float(np.median(flow[CENTRE][..., 1]))) < 0.5

    @pytest.mark.parametrize("method", FLOW_METHODS)
    def test_flow_in_between_is_sharper_than_a_cross_fade(self, method):
        image, moved, halfway = moving_pair()
        along_flow = cadence_flow_blend(image, moved, 0.5, method=method).astype(int)
        cross_fade = cadence_blend(image, moved, 0.5).astype(int)
        flow_error = np.abs(along_flow - halfway)[CENTRE].mean()
        fade_error = np.abs(cross_fade - halfway)[CENTRE].mean()
        assert flow_error < 1.0 < fade_error

    def test_flow_factor_zero_is_the_cross_fade(self):
        image, moved, _ = moving_pair()
        np.testing.assert_array_equal(cadence_flow_blend(image, moved, 0.3, flow_factor=0.0),
                                      cadence_blend(image, moved, 0.3))

    def test_warp_by_constant_flow_is_a_shift(self):
        image = smooth_image()
        flow = np.zeros(image.shape[:2] + (2,), np.float32)
        flow[..., 0] = 3
        np.testing.assert_array_equal(warp_by_flow(image, flow)[:, 3:], image[:, :-3])

    def test_errors(self):
        image = smooth_image()
        with pytest.raises(InputError, match="RAFT.*renderer"):
            optical_flow(image, image, "RAFT")
        with pytest.raises(InputError, match="not an optical-flow method"):
            optical_flow(image, image, "Lucas")
        with pytest.raises(InputError, match="tween"):
            cadence_blend(image, image, 1.5)
        with pytest.raises(InputError, match="same size"):
            cadence_blend(image, image[:10], 0.5)


def test_noise_made_ahead_is_the_noise_made_in_line():
    from framefarm.animation.coherence import noise_image

    image = smooth_image()
    h, w = image.shape[:2]
    for kind in ("perlin", "uniform"):
        ahead = noise_image(h, w, 11, noise_type=kind)
        np.testing.assert_array_equal(add_noise(image, 0.4, 11, noise_type=kind, noise=ahead),
                                      add_noise(image, 0.4, 11, noise_type=kind))
    with pytest.raises(ValueError, match="noise of shape"):
        add_noise(image, 0.4, 11, noise=noise_image(h + 1, w, 11))
