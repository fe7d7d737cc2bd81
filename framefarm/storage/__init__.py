"""Where frames live: a frame store over fsspec (a local folder or an S3-compatible bucket) with a manifest."""

from framefarm.storage.frame_store import FrameRecord, FrameStore
from framefarm.storage.hashing import file_digest, sha256_bytes

__all__ = ["FrameRecord", "FrameStore", "file_digest", "sha256_bytes"]
