"""framefarm: a batch render farm for Stable Diffusion animation and video.

The public surface is small: load a job, plan it, render it.

    >>> from framefarm.job import load_job
    >>> from framefarm.flows.render import render_job
    >>> render_job(load_job("tunnel.toml"), backend="preview", out="renders")   # doctest: +SKIP
"""

__version__ = "0.1.0"
