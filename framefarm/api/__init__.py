"""framefarm's HTTP API (FastAPI): submit JSON job specs, follow them, cancel them, download their outputs.

``framefarm api --token …`` serves it; :func:`create_app` builds the application for other ASGI servers.
"""

from framefarm.api.app import ApiSettings, create_app
from framefarm.api.osc import CLIP_READY, OscTarget

__all__ = ["CLIP_READY", "ApiSettings", "OscTarget", "create_app"]
