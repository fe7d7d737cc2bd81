"""Serve the API with uvicorn (what ``framefarm api`` runs)."""

from __future__ import annotations

from framefarm.api.app import ApiSettings, create_app


def serve(settings: ApiSettings, *, host: str = "127.0.0.1", port: int = 8787, log_level: str = "warning") -> None:
    """Run the API until interrupted (Ctrl-C or SIGTERM): a render in progress is stopped and queued again.

    ``host`` defaults to the loopback interface: expose it on a network (``--host 0.0.0.0``) only behind TLS (a
    reverse proxy), since the token travels in every request.
    """
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False,
                timeout_graceful_shutdown=30)
