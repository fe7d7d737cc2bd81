"""Camera motion: Deforum's perspective flip, its 3D move (numpy/OpenCV, no torch), and the 3D preview camera."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from framefarm.animation.camera import (
    camera_motion,
    cumulative_camera,
    depth_to_z,
    homographies_from_points,
    motion_matrices_2d,
    motion_matrices_3d,
    perspective_flip_matrices,
    rotation_matrices_xyz,
    warp_2d,
    warp_3d,
)
from framefarm.animation.plan import plan_job
from framefarm.animation.schedules import evaluate_job_schedules
from framefarm.errors import InputError
from framefarm.job import validate_job

W, H = 96, 64


def coordinates(width: int = W, height: int = H) -> np.ndarray:
    """A float image whose pixels hold their own (x, y): a warp of it returns the sampling map itself."""
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return np.dstack([xs, ys, np.zeros_like(xs)])


def sampled(translation=(0, 0, 0), rotation=(0, 0, 0), fov=90.0, depth=None, **kwargs):
    """Where each output pixel samples the input (interior pixels are exact with bilinear sampling)."""
    out = warp_3d(coordinates(), depth, translation=translation, rotation=rotation, fov=fov,
                  sampling_mode="bilinear", **kwargs)
    return out[..., 0].astype(np.float64), out[..., 1].astype(np.float64)


def grid():
    px, py = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))
    # Deforum's world coordinates of each pixel: linspace(-1, 1) over columns and rows.
    return px, py, -1 + 2 * px / (W - 1), -1 + 2 * py / (H - 1)


INTERIOR = (slice(8, -8), slice(8, -8))


class TestWarp3D:
    def test_no_move_is_the_identity(self):
        rng = np.random.default_rng(0)
        image = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
        for mode in ("bicubic", "bilinear", "nearest"):
            out = warp_3d(image, None, translation=(0, 0, 0), rotation=(0, 0, 0), fov=70, sampling_mode=mode)
            np.testing.assert_array_equal(out, image)

    def test_translation_x_shifts_by_w_tx_over_400_tan(self):
        # Offset in [-1, 1] units = tx/200 / (aspect * tan(fov/2)) = 25/200 at fov 90; W/2 = 48 pixels per unit:
        # 6 px. Positive translation_x moves the camera right, so the picture moves left: pixel p samples p + 6.
        px, py, _, _ = grid()
        sx, sy = sampled(translation=(25, 0, 0))
        np.testing.assert_allclose(sx[INTERIOR], (px + 6)[INTERIOR], atol=1e-4)
        np.testing.assert_allclose(sy[INTERIOR], py[INTERIOR], atol=1e-4)

    def test_translation_y_and_the_field_of_view(self):
        # ty = 20 at fov 60: offset = 20/200 / tan(30°) in units, H/2 = 32 px each: the picture moves down.
        px, py, _, _ = grid()
        shift = 32 * 0.1 / math.tan(math.radians(30))
        sx, sy = sampled(translation=(0, 20, 0), fov=60)
        np.testing.assert_allclose(sy[INTERIOR], (py - shift)[INTERIOR], atol=1e-4)
        np.testing.assert_allclose(sx[INTERIOR], px[INTERIOR], atol=1e-4)

    def test_aspect_ratio_scales_x_only(self):
        px, _, _, _ = grid()
        sx, _ = sampled(translation=(25, 0, 0), aspect_ratio=2.0)
        np.testing.assert_allclose(sx[INTERIOR], (px + 3)[INTERIOR], atol=1e-4)  # half the 6 px

    def test_translation_z_zooms_about_the_centre(self):
        # tz = 2: depth after the move 1 - 0.01; x projects to x / 0.99, an offset of x (1/0.99 - 1) = x / 99.
        px, py, x, y = grid()
        sx, sy = sampled(translation=(0, 0, 2))
        np.testing.assert_allclose(sx[INTERIOR], (px - W / 2 * x / 99)[INTERIOR], atol=1e-4)
        np.testing.assert_allclose(sy[INTERIOR], (py - H / 2 * y / 99)[INTERIOR], atol=1e-4)

    def test_rotation_z_turns_the_grid(self):
        # Camera turned by θ about its axis: points seen through Rzᵀ, i.e. (c x + s y, -s x + c y) at depth 1.
        px, py, x, y = grid()
        c, s = math.cos(math.radians(3)), math.sin(math.radians(3))
        sx, sy = sampled(rotation=(0, 0, 3))
        np.testing.assert_allclose(sx[INTERIOR], (px - W / 2 * ((c - 1) * x + s * y))[INTERIOR], atol=1e-4)
        np.testing.assert_allclose(sy[INTERIOR], (py - H / 2 * (-s * x + (c - 1) * y))[INTERIOR], atol=1e-4)

    def test_rotation_y_pans(self):
        # About y by θ: x' = c x - s, z' = s x + c (Ryᵀ on (x, y, 1)); the centre pixel samples -W/2 * (-s / c).
        theta = math.radians(1)
        c, s = math.cos(theta), math.sin(theta)
        sx, _ = sampled(rotation=(0, 1, 0))
        centre_x = (W - 1) / 2  # x = 0 exactly there
        np.testing.assert_allclose(sx[H // 2, W // 2 - 1: W // 2 + 1].mean(), centre_x + W / 2 * s / c, atol=2e-3)

    def test_depth_gives_parallax(self):
        # MiDaS-style depth, near (bright) top half, far bottom half: normalised 1 and 0, equalised to 1 and 0.5
        # (half the pixels at 0), so z = 2 - d is 1 near and 1.5 far: the far half moves 1/1.5 as much.
        depth = np.zeros((H, W))
        depth[: H // 2] = 7.0
        px, _, _, _ = grid()
        sx, _ = sampled(translation=(25, 0, 0), depth=depth)
        np.testing.assert_allclose((sx - px)[4: H // 2 - 2, 4:-8], 6.0, atol=1e-4)
        np.testing.assert_allclose((sx - px)[H // 2 + 2: -4, 4:-8], 6.0 / 1.5, atol=1e-4)

    def test_constant_depth_is_a_plane(self):
        a = warp_3d(coordinates(), np.full((H, W), 3.0), translation=(5, 1, 2), rotation=(0.5, 0, 1), fov=70)
        b = warp_3d(coordinates(), None, translation=(5, 1, 2), rotation=(0.5, 0, 1), fov=70)
        np.testing.assert_array_equal(a, b)

    def test_near_and_far_do_not_change_the_picture(self):
        a = warp_3d(coordinates(), None, translation=(5, 1, 2), rotation=(1, 2, 3), fov=70, near=200, far=10000)
        b = warp_3d(coordinates(), None, translation=(5, 1, 2), rotation=(1, 2, 3), fov=70, near=1, far=20)
        np.testing.assert_array_equal(a, b)

    @pytest.mark.parametrize(("mode", "edge"), [("border", 255), ("zeros", 0), ("reflection", 255)])
    def test_padding_modes(self, mode, edge):
        image = np.full((H, W, 3), 255, np.uint8)
        out = warp_3d(image, None, translation=(-100, 0, 0), rotation=(0, 0, 0), fov=90, padding_mode=mode,
                      sampling_mode="nearest")
        # tx = -100: the picture moves right by 24 px; the left strip comes from outside the frame.
        assert (out[:, :20] == edge).all() and (out[:, 30:] == 255).all()

    def test_depth_to_z_kinds(self):
        depth = np.array([[0.0, 1.0], [2.0, 3.0]])
        inverse, metric = depth_to_z(depth, "inverse"), depth_to_z(depth, "metric")
        # Four distinct values: equalised to the share of pixels at or below each, 1/4 … 1.
        np.testing.assert_allclose(np.sort(inverse.ravel()), [1.0, 1.25, 1.5, 1.75])
        np.testing.assert_allclose(np.sort(metric.ravel()), [1.25, 1.5, 1.75, 2.0])
        np.testing.assert_array_equal(depth_to_z(depth, "raw"), depth)
        assert depth_to_z(None) is None and depth_to_z(np.ones((2, 2))) is None

    @pytest.mark.parametrize(
        ("kwargs", "problem"),
        [
            ({"fov": 180}, "fov: must be strictly between 0 and 180"),
            ({"fov": 0}, "fov: must be strictly between 0 and 180"),
            ({"near": 10, "far": 5}, "0 < near < far"),
            ({"aspect_ratio": 0}, "aspect_ratio: must be > 0"),
            ({"translation": (0, 0, 200)}, "moves the camera to or past the scene"),
            ({"sampling_mode": "lanczos"}, "is not a sampling mode"),
            ({"padding_mode": "mirror"}, "is not a padding mode"),
            ({"depth": np.full((H, W), np.nan)}, "NaN or infinite"),
            ({"depth": np.ones((3, 3)) * np.arange(3)}, "must match the image"),
        ],
    )
    def test_errors(self, kwargs, problem):
        args = {"translation": (0, 0, 0), "rotation": (0, 0, 0), "fov": 70.0, "depth": None} | kwargs
        depth = args.pop("depth")
        with pytest.raises(InputError, match=problem):
            warp_3d(np.zeros((H, W, 3), np.uint8), depth, **args)


def preview_map(matrix):
    """Where the preview homography samples each pixel (the inverse of the forward matrix)."""
    px, py, _, _ = grid()
    inverse = np.linalg.inv(matrix)
    q = inverse @ np.stack([px.ravel(), py.ravel(), np.ones(px.size)])
    return (q[0] / q[2]).reshape(H, W), (q[1] / q[2]).reshape(H, W)


def matrix_3d(translation=(0, 0, 0), rotation=(0, 0, 0), fov=90.0, aspect=1.0):
    arrays = [np.array([v], dtype=np.float64) for v in (*translation, *rotation, fov, aspect)]
    return motion_matrices_3d(*arrays, width=W, height=H)[0]


class TestPreviewHomography:
    @pytest.mark.parametrize(("translation", "rotation"), [((25, 0, 0), (0, 0, 0)), ((3, -7, 4), (0, 0, 0)),
                                                            ((0, 0, 0), (0, 0, 5)), ((2, 3, 1.75), (0, 0, -2))])
    def test_exact_where_deforums_map_is_affine(self, translation, rotation):
        # Translations and turns about the view axis give an affine sampling map over a plane: the homography that
        # matches it at the corners matches it everywhere.
        want_x, want_y = sampled(translation, rotation)
        got_x, got_y = preview_map(matrix_3d(translation, rotation))
        np.testing.assert_allclose(got_x[INTERIOR], want_x[INTERIOR], atol=2e-3)
        np.testing.assert_allclose(got_y[INTERIOR], want_y[INTERIOR], atol=2e-3)

    @pytest.mark.parametrize("rotation", [(0.5, 0, 0), (0, 1, 0), (0.3, 0.4, 0.5)])
    def test_close_for_small_tilts_and_pans(self, rotation):
        want_x, want_y = sampled((0, 0, 0), rotation, fov=70)
        got_x, got_y = preview_map(matrix_3d((0, 0, 0), rotation, fov=70))
        assert np.abs(got_x - want_x)[INTERIOR].max() < 0.1
        assert np.abs(got_y - want_y)[INTERIOR].max() < 0.1

    def test_refuses_passing_the_plane(self):
        with pytest.raises(InputError, match=r"motion\.translation_z.*at frame 0"):
            matrix_3d((0, 0, 250))


def flip_reference(width, height, theta, phi, gamma, fv):
    """Deforum's perspective flip, built the long way with OpenCV from the design description: corners rotated by
    Rx(phi)·Ry(gamma)·Rz(theta), pushed back by h, projected by a 4x4 perspective (whose bottom-right entry Deforum
    leaves at 1), mapped to a side×side canvas, then offset by (W - side)/2."""
    half = math.radians(fv / 2)
    diagonal = math.hypot(width, height)
    side, h = diagonal / math.cos(half), diagonal / (2 * math.sin(half))
    near, far = h - diagonal / 2, h + diagonal / 2
    push = np.eye(4)
    push[2, 3] = -h
    rotate = np.eye(4)
    rotate[:3, :3] = rotation_matrices_xyz(np.array(phi), np.array(gamma), np.array(theta))
    project = np.eye(4)
    project[0, 0] = project[1, 1] = 1 / math.tan(half)
    project[2, 2], project[2, 3], project[3, 2] = -(far + near) / (far - near), -2 * far * near / (far - near), -1
    corners = np.array([[[-width / 2, height / 2, 0], [width / 2, height / 2, 0], [width / 2, -height / 2, 0],
                         [-width / 2, -height / 2, 0]]])
    out = cv2.perspectiveTransform(corners, project @ push @ rotate)
    src = (corners[0, :, :2] + [width / 2, height / 2]).astype(np.float32)
    dst = ((out[0, :, :2] + 1) * side / 2).astype(np.float32)
    offset = np.array([[1, 0, (width - side) / 2], [0, 1, (height - side) / 2], [0, 0, 1]])
    return cv2.getPerspectiveTransform(src, dst) @ offset


class TestPerspectiveFlip:
    @pytest.mark.parametrize("angles", [(0, 0, 0, 53), (10, 0, 0, 53), (0, 5, 0, 53), (0, 0, 7, 40),
                                        (3, -4, 5, 60), (0, 20, -10, 90)])
    def test_matches_the_opencv_construction(self, angles):
        got = perspective_flip_matrices(*[np.array([a], dtype=np.float64) for a in angles], width=640, height=360)[0]
        want = flip_reference(640, 360, *angles)
        points = np.array([[[0, 0], [639, 0], [320, 180], [100, 300], [639, 359]]], dtype=np.float64)
        np.testing.assert_allclose(cv2.perspectiveTransform(points, got), cv2.perspectiveTransform(points, want),
                                   atol=1e-3)  # the reference goes through float32, as Deforum does

    def test_zero_angles_shrink_by_h_over_h_plus_1(self):
        # h = d / (2 sin(fv/2)) = 724.08 / (2 sin 26.5°) = 811.4 for 512x512: Deforum's projection divides by h + 1.
        h = math.hypot(512, 512) / (2 * math.sin(math.radians(26.5)))
        flip = perspective_flip_matrices(*np.zeros((3, 1)), np.array([53.0]), width=512, height=512)[0]
        assert flip[0, 0] == pytest.approx(h / (h + 1), abs=1e-9) and flip[1, 1] == pytest.approx(h / (h + 1))
        assert flip[0, 1] == pytest.approx(0, abs=1e-9) and flip[2, :2] == pytest.approx([0, 0], abs=1e-12)

    def test_translation_is_kept(self):
        # Deforum means F·R·T but its np.matmul(F, R, T) writes F·R into T: the translation is lost.
        n = 2
        values = {"zoom": np.full(n, 1.01), "angle": np.full(n, 2.0), "translation_x": np.full(n, 10.0),
                  "translation_y": np.full(n, -3.0), "transform_center_x": np.full(n, 0.5),
                  "transform_center_y": np.full(n, 0.5), "perspective_flip.theta": np.zeros(n),
                  "perspective_flip.phi": np.full(n, 4.0), "perspective_flip.gamma": np.zeros(n),
                  "perspective_flip.fv": np.full(n, 53.0)}
        got = camera_motion(values, width=W, height=H, perspective_flip=True)
        flip = perspective_flip_matrices(np.zeros(n), np.full(n, 4.0), np.zeros(n), np.full(n, 53.0), width=W,
                                         height=H)
        two_d = motion_matrices_2d(*(values[k] for k in ("zoom", "angle", "translation_x", "translation_y",
                                                         "transform_center_x", "transform_center_y")),
                                   width=W, height=H)
        np.testing.assert_allclose(got, flip @ two_d)
        dropped = motion_matrices_2d(values["zoom"], values["angle"], np.zeros(n), np.zeros(n), values[
            "transform_center_x"], values["transform_center_y"], width=W, height=H)
        assert not np.allclose(got, flip @ dropped)

    def test_edge_on_tilt_is_refused(self):
        with pytest.raises(InputError, match=r"perspective_flip: turns the frame edge-on .* at frame 1"):
            perspective_flip_matrices(np.zeros(2), np.array([0.0, 90.0]), np.zeros(2), np.full(2, 53.0),
                                      width=64, height=64)


def test_homographies_match_opencv():
    rng = np.random.default_rng(3)
    src = rng.uniform(0, 100, (20, 4, 2))
    dst = src + rng.normal(0, 5, src.shape)
    got = homographies_from_points(src, dst)
    for i in range(20):
        want = cv2.getPerspectiveTransform(src[i].astype(np.float32), dst[i].astype(np.float32))
        np.testing.assert_allclose(got[i], want / want[2, 2], rtol=1e-4, atol=1e-4)


def test_warp_2d_is_opencvs_warp():
    image = np.random.default_rng(1).integers(0, 256, (H, W, 3), dtype=np.uint8)
    matrix = motion_matrices_2d(*[np.array([v]) for v in (1.1, 10.0, 3.0, -2.0, 0.5, 0.5)], width=W, height=H)[0]
    want = cv2.warpPerspective(image, matrix, (W, H), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
    np.testing.assert_array_equal(warp_2d(image, matrix, border="wrap"), want)
    with pytest.raises(InputError, match="motion.border"):
        warp_2d(image, matrix, border="smart")  # type: ignore[arg-type]


class TestPlannedCamera:
    def job(self, **fields):
        return validate_job({"kind": "deforum", "name": "cam", "frames": 6, "width": W, "height": H} | fields)

    def test_3d_job_moves_by_the_3d_schedules_and_ignores_zoom(self):
        job = self.job(animation_mode="3D", motion={"zoom": "0:(0)", "translation_x": "0:(25)"})
        plan = plan_job(job, renderer="preview@1")
        step = matrix_3d((25, 0, 0), fov=70)
        np.testing.assert_allclose(plan.chunks[0].camera_matrix(1), step, atol=1e-12)
        np.testing.assert_allclose(plan.chunks[0].camera_matrix(2), step @ step, atol=1e-9)

    def test_2d_job_with_zoom_zero_is_refused_but_3d_is_not(self):
        with pytest.raises(InputError, match=r"motion\.zoom: is 0 at frame 0 \(and 5 more\)"):
            self.job(motion={"zoom": "0:(0)"})
        self.job(animation_mode="3D", motion={"zoom": "0:(0)"})

    def test_3d_move_through_the_scene_is_refused_at_load(self):
        with pytest.raises(InputError, match=r"motion\.translation_z.*at frame 3"):
            self.job(animation_mode="3D", motion={"translation_z": "0:(0), 3:(200)"})

    def test_perspective_flip_enters_the_camera(self):
        still = plan_job(self.job(), renderer="preview@1").chunks[0].camera_matrix(3)
        flipped = plan_job(self.job(motion={"perspective_flip": {"enabled": True, "phi": "0:(2)"}}),
                           renderer="preview@1").chunks[0].camera_matrix(3)
        np.testing.assert_allclose(still, np.eye(3))
        assert abs(flipped[2, 1]) > 1e-6  # a real perspective term: a tilt about x

    def test_3d_plan_camera_is_cumulative(self):
        job = self.job(animation_mode="3D", motion={"translation_z": "0:(2)", "rotation_3d_z": "0:(1)"})
        values = evaluate_job_schedules(job)
        motion = camera_motion(values, width=W, height=H, mode="3D")
        plan = plan_job(job, renderer="preview@1")
        np.testing.assert_allclose(plan.chunks[0].camera_matrix(5), cumulative_camera(motion)[5], atol=1e-12)
