"""Pure animation maths: keyframe schedules, prompts, seeds, camera motion and planning.

Nothing here imports torch, diffusers or prefect, so planning runs anywhere (a laptop, the API server, CI) and is
deterministic: the same job gives the same plan, bit for bit.
"""
