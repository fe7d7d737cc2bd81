"""The CLI's own Prefect server: out of reach of Ctrl-C to the process group, but never outliving the CLI."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import psutil
import pytest

pytestmark = pytest.mark.slow

CLI_LIKE = textwrap.dedent("""
    import sys, time
    from framefarm.flows.local_server import use_local_server
    server = use_local_server(120)
    print(server.process.pid, server.api_url, flush=True)
    time.sleep(600)
""")


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_the_server_ignores_sigint_to_the_group_and_dies_with_its_parent(tmp_path):
    env = {**os.environ, "PREFECT_HOME": str(tmp_path)}
    env.pop("PREFECT_API_URL", None)
    # SIGINT as a terminal's foreground process has it: a suite started in the background of a non-interactive
    # shell (`make test &`) ignores SIGINT, and an ignored signal stays ignored in every child it starts.
    parent = subprocess.Popen([sys.executable, "-c", CLI_LIKE], stdout=subprocess.PIPE, text=True, env=env,
                              start_new_session=True, preexec_fn=_default_sigint)
    try:
        pid, url = parent.stdout.readline().split()
        server = psutil.Process(int(pid))
        assert server.ppid() == parent.pid and os.getpgid(server.pid) != parent.pid  # not in the CLI's group
        os.killpg(parent.pid, signal.SIGINT)  # Ctrl-C: the CLI's business (here it just dies), not the server's
        parent.wait(timeout=30)
        assert parent.returncode != 0
        server.wait(timeout=10)  # it died with its parent
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_configured_server_is_used_and_nothing_is_started(tmp_path):
    code = ("from framefarm.flows.local_server import use_local_server\n"
            "assert use_local_server(5) is None\nprint('ok')")
    env = {**os.environ, "PREFECT_HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "ok", run.stderr
