"""Pure animation maths: keyframe schedules, prompts, seeds, camera motion, coherence ops, settings import, planning.

Nothing here imports torch, diffusers, prefect or pydantic, so planning runs anywhere (a laptop, the API server, CI)
and is deterministic: the same job gives the same plan, bit for bit. Image operations use numpy and OpenCV only.

* ``safe_math``, ``keyframes``, ``prompts``, ``seeds``, ``schedules`` — Deforum's schedule grammar and its values;
* ``camera`` — 2D warps, perspective flip, 3D moves (``warp_3d``) and the closed-form preview camera;
* ``coherence`` — colour matching, contrast, anti-blur, noise and cadence in-betweens;
* ``deforum_import`` — Deforum settings files to job dicts (and TOML);
* ``plan`` — a job cut into hashable chunks.
"""
