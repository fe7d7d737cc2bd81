"""Renderer tests share the session-wide tiny models folder of tests/conftest.py (``tiny_library``, ``models_dir``)."""
