"""Two CUDA streams for consecutive batches, so the host queues the next batch while the GPU still runs this one.

Why: a batch's pipeline call starts with work the host must wait for — diffusers' scheduler copies its timesteps
and sigmas from pageable memory and back, the prompt's token ids travel the same way — and every such copy makes
its CUDA stream wait until all queued work is done. On one stream the GPU therefore ran dry at each batch boundary
while the host encoded prompts, built the pipeline and queued the VAE encode (an H100 profile of video2video at
batch 32: busy 83 % of a 3.36 s batch, 7 waits per batch, none inside the denoising loop). With batch ``n`` on one
stream and ``n + 1`` on the other, those waits only drain the other stream, which is idle: the host gets the next
batch queued behind the running one.

What stays the same: every kernel computes what it computed on one stream (the batches share no tensors; the
models are read-only while batches overlap), so the pixels do not change. What it costs: two batches' activations
can be alive at once, so it is used only when the device has room for a second copy of everything the process holds
(otherwise a batch could run out of memory and be split in halves, which changes rounding). Batches whose LoRAs or
hypernetworks differ never overlap: applying them rewrites the models' weights.

Not for CUDA graphs (the Deforum chain's reduce-overhead compile replays graphs captured on one stream): video2video
uses it.
"""

from __future__ import annotations

import contextlib
from typing import Any

# Off: one stream, as before (the GPU benchmark compares both in one process).
ENABLED = True

_side_streams: dict[Any, Any] = {}  # device → the second stream, one per process (its cached memory is reused)


class BatchStreams:
    """Which stream batch ``n`` is queued on: the current one for even ``n``, a second one for odd ``n``."""

    def __init__(self, device) -> None:
        import torch

        self.device = torch.device(device)
        self.streams = None
        self.networks = None
        self.room_checked = False
        if ENABLED and self.device.type == "cuda" and torch.cuda.is_available():
            side = _side_streams.get(self.device)
            if side is None:
                side = _side_streams[self.device] = torch.cuda.Stream(self.device)
            self.streams = (torch.cuda.current_stream(self.device), side)

    @property
    def overlapping(self) -> bool:
        return self.streams is not None

    def stream(self, n: int, networks) -> contextlib.AbstractContextManager:
        """The context to queue batch ``n`` in; ``networks``: the distinct LoRA/hypernetwork sets of its groups,
        in the order they run."""
        import torch

        if self.streams is None:
            return contextlib.nullcontext()
        if n > 0 and not self.room_checked:
            self.room_checked = True
            if not _room_for_another_batch(self.device):
                self.streams = None
                return contextlib.nullcontext()
        # Applying other networks rewrites the weights: the batch before must have finished. A batch whose groups
        # use several sets switches between them itself, so it neither overlaps the batch before nor the one after.
        if self.networks is not None and (networks != self.networks or len(networks) != 1):
            torch.cuda.synchronize(self.device)
        self.networks = networks
        return torch.cuda.stream(self.streams[n % 2])

    def finish(self) -> None:
        """Make the caller's stream wait for the side stream (what comes after the chunk sees every batch done)."""
        if self.streams is not None:
            self.streams[0].wait_stream(self.streams[1])


def _room_for_another_batch(device) -> bool:
    """Whether the device could hold a second copy of all the memory this process has reserved (models and a
    batch's working set): conservative on purpose, since running out would split a batch."""
    import torch

    free, _ = torch.cuda.mem_get_info(device)
    reserved = torch.cuda.memory_reserved(device)
    unused_reserved = reserved - torch.cuda.memory_allocated(device)
    return free + unused_reserved >= reserved
