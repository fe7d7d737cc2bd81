"""Encode presets: one table of what each output format needs from ffmpeg.

Every preset is a :class:`Codec`: the encoder and its arguments, the container, the pixel format written, the one
ffmpeg reports when it decodes the file (what the tests check), and the size rules of the format. ``CODECS`` maps the
names users type (``--codec hapq``, ``output.codec = "hapq"``) to presets; an unknown name raises an
:class:`~framefarm.errors.InputError` listing the known ones.

Notes on the choices (measured with imageio-ffmpeg's ffmpeg 9.0.2):

* YUV formats are converted from RGB with the Rec.709 matrix and tagged bt709: swscale's default is BT.601, which
  players then decode as 709 for HD and the colours shift (greens and reds by ~5–10 code values).
* HAP's DXT compression works on 4×4 blocks, so width and height must be multiples of 4 ("Video size 66x50 is not
  multiple of 4"); there is no HAP Q Alpha encoder in ffmpeg. HAP Q and HAP decode to ``rgb0``, HAP Alpha to ``rgba``.
* DNxHR (``dnxhd`` encoder, ``dnxhr_hq`` profile: 8-bit 4:2:2) refuses frames smaller than 256×120.
* GIF gets a per-clip palette (``palettegen``/``paletteuse``); frame delays are whole centiseconds, and ffmpeg
  varies them to keep the rate on average (24 fps: 4, 4, 4, 4, 5 cs …), so the clip's length is kept within a
  frame; ``framefarm.video.gif`` reads them back. Frame count is kept.
* PNG sequence: a folder of ``000000.png`` … (lossless RGB, RGBA when the frames have alpha).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from framefarm.errors import InputError

# Rec.709 conversion and tags for every YUV output (see the module docstring).
REC709_TAGS = ["-colorspace", "bt709", "-color_primaries", "bt709", "-color_trc", "bt709", "-color_range", "tv"]


@dataclass(frozen=True)
class Codec:
    """An encode preset.

    Attributes:
        name: the name users type (``"prores"``).
        label: what it is, for messages and ``--help`` (``"Apple ProRes 422 HQ"``).
        encoder: the ffmpeg encoder it needs (checked with :func:`~framefarm.video.ffmpeg.require_encoders`).
        suffix: the container's file suffix; ``""`` for an image sequence (a folder).
        suffixes: every suffix accepted for ``-o`` (the first is the default).
        pix_fmt: pixel format the encoder is given (RGB input is converted to it by ffmpeg).
        alpha_pix_fmt: pixel format used when the frames carry alpha (``None``: alpha is dropped, with a note).
        decoded_pix_fmt: pixel format ffmpeg reports when it reads the output back (without / with alpha).
        args: encoder arguments after ``-c:v``.
        yuv: RGB → YUV conversion happens (Rec.709 matrix and tags added).
        multiple: width and height must be multiples of these (``(4, 4)`` for HAP, ``(2, 2)`` for 4:2:0).
        min_size: smallest width and height the encoder accepts.
        uses_crf: ``crf`` applies (H.264, H.265, VP9).
        uses_preset: the x264/x265 speed preset applies.
        audio_codec: audio encoder when a sound track is muxed in (``None``: the format carries no audio).
        size_note: why the size rule exists, shown in the note when frames are cropped to fit.
    """

    name: str
    label: str
    encoder: str
    suffix: str
    suffixes: tuple[str, ...]
    pix_fmt: str
    alpha_pix_fmt: str | None
    decoded_pix_fmt: tuple[str, str | None]
    args: tuple[str, ...]
    yuv: bool = True
    multiple: tuple[int, int] = (2, 2)
    min_size: tuple[int, int] = (1, 1)
    uses_crf: bool = False
    uses_preset: bool = False
    audio_codec: tuple[str, ...] | None = ("-c:a", "aac", "-b:a", "192k")
    size_note: str = "4:2:0 chroma needs even sides"
    extra_output_args: tuple[str, ...] = field(default=())

    @property
    def is_sequence(self) -> bool:
        """The output is a folder of images, not one file."""
        return self.suffix == ""

    @property
    def supports_alpha(self) -> bool:
        return self.alpha_pix_fmt is not None


_MOV_PCM16 = ("-c:a", "pcm_s16le")
_MOV_PCM24 = ("-c:a", "pcm_s24le")

CODECS: dict[str, Codec] = {
    codec.name: codec
    for codec in (
        Codec("h264", "H.264 (MP4, yuv420p)", "libx264", ".mp4", (".mp4", ".mov", ".mkv"), "yuv420p", None,
              ("yuv420p", None), ("-c:v", "libx264"), uses_crf=True, uses_preset=True,
              # +faststart moves the index to the front so players start before the whole file arrives.
              extra_output_args=("-movflags", "+faststart")),
        Codec("h265", "H.265/HEVC (MP4, yuv420p)", "libx265", ".mp4", (".mp4", ".mov", ".mkv"), "yuv420p", None,
              ("yuv420p", None),
              # hvc1 is the sample entry Apple players require; x265's own log would flood stderr.
              ("-c:v", "libx265", "-tag:v", "hvc1", "-x265-params", "log-level=error"),
              uses_crf=True, uses_preset=True, extra_output_args=("-movflags", "+faststart")),
        Codec("prores", "Apple ProRes 422 HQ (MOV, 10-bit 4:2:2)", "prores_ks", ".mov", (".mov",), "yuv422p10le",
              None, ("yuv422p10le", None), ("-c:v", "prores_ks", "-profile:v", "3", "-vendor", "apl0"),
              multiple=(2, 1), audio_codec=_MOV_PCM24, size_note="4:2:2 chroma needs an even width"),
        Codec("prores4444", "Apple ProRes 4444 (MOV, 10-bit 4:4:4, alpha kept)", "prores_ks", ".mov", (".mov",),
              "yuv444p10le", "yuva444p10le", ("yuv444p12le", "yuva444p12le"),
              ("-c:v", "prores_ks", "-profile:v", "4", "-vendor", "apl0"), multiple=(1, 1), audio_codec=_MOV_PCM24),
        Codec("hap", "HAP (MOV, DXT1) for Resolume / TouchDesigner", "hap", ".mov", (".mov",), "rgba", None,
              ("rgb0", None), ("-c:v", "hap", "-format", "hap"), yuv=False, multiple=(4, 4),
              audio_codec=_MOV_PCM16, size_note="HAP compresses 4x4 pixel blocks, so sides must be multiples of 4"),
        Codec("hapq", "HAP Q (MOV, higher quality HAP)", "hap", ".mov", (".mov",), "rgba", None, ("rgb0", None),
              ("-c:v", "hap", "-format", "hap_q"), yuv=False, multiple=(4, 4), audio_codec=_MOV_PCM16,
              size_note="HAP compresses 4x4 pixel blocks, so sides must be multiples of 4"),
        Codec("hapalpha", "HAP Alpha (MOV, DXT5 with alpha)", "hap", ".mov", (".mov",), "rgba", "rgba",
              ("rgba", "rgba"), ("-c:v", "hap", "-format", "hap_alpha"), yuv=False, multiple=(4, 4),
              audio_codec=_MOV_PCM16, size_note="HAP compresses 4x4 pixel blocks, so sides must be multiples of 4"),
        Codec("dnxhr", "Avid DNxHR HQ (MOV, 8-bit 4:2:2)", "dnxhd", ".mov", (".mov", ".mxf"), "yuv422p", None,
              ("yuv422p", None), ("-c:v", "dnxhd", "-profile:v", "dnxhr_hq"), multiple=(2, 1), min_size=(256, 120),
              audio_codec=_MOV_PCM24, size_note="4:2:2 chroma needs an even width"),
        Codec("webm", "WebM VP9 (yuv420p, yuva420p with alpha)", "libvpx-vp9", ".webm", (".webm", ".mkv"),
              "yuv420p", "yuva420p", ("yuv420p", "yuv420p"),
              # Constant quality (-b:v 0 with -crf); row-mt and cpu-used 4 keep it a few times faster than default.
              ("-c:v", "libvpx-vp9", "-b:v", "0", "-deadline", "good", "-cpu-used", "4", "-row-mt", "1"),
              uses_crf=True, audio_codec=("-c:a", "libopus", "-b:a", "160k")),
        Codec("gif", "animated GIF (per-clip palette)", "gif", ".gif", (".gif",), "pal8", None, ("bgra", None),
              ("-c:v", "gif", "-loop", "0"), yuv=False, multiple=(1, 1), audio_codec=None),
        Codec("png", "PNG sequence (a folder of 000000.png …)", "png", "", ("",), "rgb24", "rgba",
              ("rgb24", "rgba"), ("-c:v", "png"), yuv=False, multiple=(1, 1), audio_codec=None),
    )
}

CODEC_NAMES: tuple[str, ...] = tuple(CODECS)


def get_codec(name: str, *, field: str = "codec") -> Codec:
    """The preset called ``name``; an :class:`InputError` listing the presets when there is none."""
    try:
        return CODECS[name.lower().strip()]
    except (KeyError, AttributeError):
        raise InputError(field, name, "is not an encode preset", f"Use one of: {', '.join(CODEC_NAMES)}") from None


def fit_size(codec: Codec, width: int, height: int) -> tuple[int, int, str | None]:
    """Largest size ≤ ``width``×``height`` the codec accepts, and a note when it differs.

    Frames are centre-cropped to it (at most ``multiple - 1`` pixels a side: no resampling blur, no borders).

    Raises:
        InputError: the frames are smaller than the codec's minimum (DNxHR: 256×120).
    """
    min_w, min_h = codec.min_size
    if width < min_w or height < min_h:
        raise InputError("size", f"{width}x{height}", f"is below {codec.label}'s minimum of {min_w}x{min_h}",
                         "Upscale the frames (--upscale 2) or use --codec prores")
    mult_w, mult_h = codec.multiple
    fitted_w, fitted_h = width - width % mult_w, height - height % mult_h
    if (fitted_w, fitted_h) == (width, height):
        return width, height, None
    return fitted_w, fitted_h, (f"{codec.name}: {codec.size_note}; {width}x{height} frames are centre-cropped to "
                                f"{fitted_w}x{fitted_h}")
