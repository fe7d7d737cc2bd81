"""Prefect orchestration: flows and tasks only; rendering and ffmpeg live in renderers/ and video/."""
