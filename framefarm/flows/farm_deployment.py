"""The farm's set-up on Prefect's own server: the work pool and the ``render-job/farm`` deployment workers run.

Workers (``prefect worker start --pool framefarm``) import the render flow from the installed package by its module
path (``ENTRYPOINT``). Queueing and steering jobs on the deployment is :mod:`framefarm.flows.farm_queue`.
"""

from __future__ import annotations

from prefect import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

from framefarm.flows.farm_runs import DEPLOYMENT, POOL
from framefarm.flows.render import render_job

ENTRYPOINT = "framefarm.flows.render.render_job"  # a module path: workers import the installed package


def setup(pool: str = POOL) -> str:
    """Create the process work pool and the ``render-job/farm`` deployment (idempotent). Returns its id."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(pool)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
    deployment = render_job.to_deployment(name=DEPLOYMENT, work_pool_name=pool)
    deployment.entrypoint = ENTRYPOINT
    return str(deployment.apply(work_pool_name=pool))
