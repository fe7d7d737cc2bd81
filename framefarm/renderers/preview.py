"""The weight-free preview renderer: the job's camera motion, timing, seeds and prompts, with no model and no GPU.

What it draws, by kind:

* ``deforum`` / ``animatediff``: the endless test card (or the init image) seen through the frame's cumulative 2D
  camera, so zoom, rotation and translation schedules can be judged at full speed;
* ``video2video``: the source frame, posterised and edge-inked in proportion to the ``strength`` schedule — a stand-in
  for "restyled, guided by the ControlNet edges".

A head-up strip shows the frame number, seed, zoom and prompt, so prompt timing and seed behaviour are visible.
Every frame depends only on its own inputs (the camera is cumulative in the plan), so chunks render in any order and
frames are byte-identical whatever the chunk size.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from framefarm.animation.plan import ChunkSpec
from framefarm.animation.source_color import color_match_frame
from framefarm.images import fit_cover, load_image
from framefarm.renderers.base import RenderContext
from framefarm.renderers.testcard import endless_card

HUD_HEIGHT_FRACTION = 0.11


class PreviewRenderer:
    name = "preview"
    version = "1"

    @property
    def id(self) -> str:
        return f"{self.name}@{self.version}"

    def render(self, chunk: ChunkSpec, frames: Sequence[int], context: RenderContext) -> Iterator[tuple[int, np.ndarray]]:
        job = context.job
        init = None
        if job.init_image:
            init = fit_cover(load_image(job.init_image, field="init_image"), job.width, job.height)
        # A Deforum shot with its own init image shows it (a chunk lies inside one shot; its camera starts there).
        shots = getattr(job, "shot_list", ())
        if len(shots) > chunk.shot and shots[chunk.shot].init_image:
            init = fit_cover(load_image(shots[chunk.shot].init_image, field="shots.init_image"), job.width,
                             job.height)
        elif chunk.shot > 0:
            init = None  # later shots start from the test card, as they start from txt2img on the diffusers backend
        border = cv2.BORDER_WRAP if job.motion.border == "wrap" else cv2.BORDER_REPLICATE
        hue_offset = (job.seed * 37) % 180
        for frame in frames:
            i = chunk.local(frame)
            if job.kind == "video2video":
                if context.source_frame is None:
                    raise RuntimeError("video2video preview needs the prepared source frames")
                image = color_match_frame(job, _restyle(context.source_frame(frame), chunk.values["strength"][i]),
                                          frame, context.source_frame)
            elif init is not None:
                image = cv2.warpPerspective(init, chunk.camera_matrix(frame), (job.width, job.height),
                                            flags=cv2.INTER_LINEAR, borderMode=border)
            else:
                image = endless_card(job.width, job.height, np.linalg.inv(chunk.camera_matrix(frame)),
                                     hue_offset=hue_offset)
            hud = f"#{frame}  seed {chunk.seeds[i]}  zoom {chunk.values['zoom'][i]:.3f}"
            prompt = chunk.prompts[i]
            if job.positive_prompt and prompt.startswith(job.positive_prompt):  # show the frame's own words
                prompt = prompt[len(job.positive_prompt):].lstrip(" ,")
            yield frame, _draw_hud(image, hud, prompt)


def _restyle(source: np.ndarray, strength: float) -> np.ndarray:
    """Posterise and ink the source's edges, blended in by ``strength`` (0 = the source, 1 = fully restyled)."""
    poster = (source // 64) * 64 + 32
    edges = cv2.Canny(cv2.cvtColor(source, cv2.COLOR_RGB2GRAY), 80, 160)
    styled = poster.copy()
    styled[edges > 0] = (20, 20, 20)
    return cv2.addWeighted(source, 1.0 - strength, styled.astype(np.uint8), strength, 0.0)


def _draw_hud(image: np.ndarray, line1: str, prompt: str) -> np.ndarray:
    image = np.ascontiguousarray(image.copy())
    height, width = image.shape[:2]
    strip = max(18, int(height * HUD_HEIGHT_FRACTION))
    image[height - strip:] = (image[height - strip:] * 0.35).astype(np.uint8)
    scale = max(0.3, strip / 60)
    font = cv2.FONT_HERSHEY_SIMPLEX
    cv2.putText(image, line1, (6, height - strip + int(strip * 0.42)), font, scale, (255, 255, 255), 1, cv2.LINE_AA)
    # Shorten the prompt to what fits the width (Hershey glyphs are about 20 px wide at scale 1).
    fits = max(8, int(width / (20 * scale * 0.9)))
    text = prompt if len(prompt) <= fits else prompt[: fits - 3] + "..."
    cv2.putText(image, text, (6, height - 6), font, scale * 0.85, (200, 230, 255), 1, cv2.LINE_AA)
    return image
