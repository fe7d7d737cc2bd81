"""``framefarm plan`` and ``framefarm validate`` work out a job without importing Prefect: planning is pure, and the
orchestrator (1.5 s of imports, a settings and plugin system) is loaded only when something is run."""

from __future__ import annotations

import subprocess
import sys

import pytest

RUN_CLI = """
import runpy, sys
sys.argv = ["framefarm", *sys.argv[1:]]
try:
    runpy.run_module("framefarm", run_name="__main__")
except SystemExit as exit:
    code = exit.code
else:
    code = 0
print("exit", code, "prefect", "prefect" in sys.modules, file=sys.stderr)
"""


@pytest.mark.parametrize("command", [["plan"], ["plan", "--json"], ["validate"]])
def test_planning_commands_do_not_import_prefect(tmp_path, command):
    job = tmp_path / "job.toml"
    job.write_text('preset = "zoom-tunnel"\nname = "pure"\nframes = 12\nwidth = 64\nheight = 64\n')
    run = subprocess.run([sys.executable, "-c", RUN_CLI, command[0], str(job), *command[1:]], capture_output=True,
                         text=True, timeout=120, cwd=tmp_path)
    assert run.stderr.strip().splitlines()[-1] == "exit 0 prefect False", run.stderr[-2000:]
    assert "pure" in run.stdout


def test_the_check_sees_prefect_when_a_command_loads_it(tmp_path):
    """The check itself: once the flows' tasks are imported, it reports Prefect as loaded."""
    run = subprocess.run([sys.executable, "-c", RUN_CLI + "\nimport framefarm.flows.tasks\nprint('prefect' in "
                          "sys.modules, file=sys.stderr)\n", "--help"], capture_output=True, text=True, timeout=120,
                         cwd=tmp_path)
    assert run.stderr.strip().splitlines()[-1] == "True", run.stderr[-2000:]
