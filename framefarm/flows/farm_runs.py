"""The farm deployment's names and flow runs, as the render flow itself needs them: read one, queue its job again.

Apart from :mod:`framefarm.flows.farm_deployment`, which imports the render flow to deploy it: the render flow
imports this module to requeue itself when the render window closes, without importing the module that imports it.
:mod:`framefarm.flows.farm_queue` (queueing and steering jobs) takes the names and run helpers from here too.
"""

from __future__ import annotations

from prefect import get_client
from prefect.exceptions import ObjectNotFound

from framefarm.errors import InputError

DEPLOYMENT = "farm"
POOL = "framefarm"  # the work pool the deployment's runs wait in


def read_run(client, run_id: str):
    """The flow run ``run_id``, or an InputError saying it is not one of this server's."""
    try:
        return client.read_flow_run(run_id)
    except ObjectNotFound:
        raise InputError("job", run_id, "is not a flow run of this Prefect server", "See `framefarm queue`") from None


def requeue(run_id: str) -> str:
    """A new run with the same job, backend, output and priority. Returns the new run id."""
    from prefect.deployments import run_deployment

    with get_client(sync_client=True) as client:
        run = read_run(client, run_id)
    new = run_deployment(f"render-job/{DEPLOYMENT}", parameters=run.parameters, timeout=0,
                         work_queue_name=run.work_queue_name, tags=list(run.tags), as_subflow=False)
    return str(new.id)
