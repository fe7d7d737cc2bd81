"""The model library: the user's SD1.5/SDXL files, found, classified, hashed and loaded offline.

* :mod:`.library`   — scan an A1111-style models folder; :class:`~.library.ModelLibrary`, ``find``;
* :mod:`.detect`    — kind and base (SD1.5/SDXL) from tensor names and shapes;
* :mod:`.hashing`   — SHA-256 and A1111's short hash, cached;
* :mod:`.loader`    — single files (config skeletons + shapes), diffusers folders, the per-process model cache;
* :mod:`.lora`, :mod:`.embeddings` — LoRAs fused and restored exactly; textual-inversion vectors;
* :mod:`.merge`     — A1111's checkpoint merger, streamed;
* :mod:`.keys`      — content hashes of the files a job uses, for frame keys and manifests;
* :mod:`.plugins`   — renderers from the ``framefarm.renderers`` entry-point group.

Nothing here imports torch or diffusers at import time; the loader imports them when a model is loaded.
"""
