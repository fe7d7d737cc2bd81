"""docker-compose.yml agrees with the code (no Docker engine here: `docker compose config` can't run in CI)."""

from __future__ import annotations

import yaml

from framefarm.flows.farm import POOL
from tests.conftest import REPO


def test_compose_declares_the_farm_and_its_worker_uses_our_pool():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"postgres", "prefect-server", "objectstore", "worker-gpu0"} <= set(services)
    worker = services["worker-gpu0"]
    assert f"--pool {POOL}" in worker["command"]
    assert worker["environment"]["PREFECT_API_URL"] == "http://prefect-server:4200/api"
    assert "postgresql" in services["prefect-server"]["environment"]["PREFECT_API_DATABASE_CONNECTION_URL"]
    assert (REPO / worker["build"]["dockerfile"]).is_file()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert source.startswith(("./", "${", "/")) or source in compose["volumes"], (name, volume)
