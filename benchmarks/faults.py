"""Run the fault-injection suite in its full version and write the figures: faults tried, survived, frames lost.

    PYTHONPATH=$PWD nice python benchmarks/faults.py                 # 20 trials per fault (~15–30 min on 2 cores)
    PYTHONPATH=$PWD python benchmarks/faults.py --trials 3 --out /tmp/faults   # a reduced run

Each fault test (tests/faults/) logs one JSON line per trial to ``$FRAMEFARM_FAULT_LOG``; this script runs them with
``FRAMEFARM_FAULT_TRIALS`` set, then writes ``faults.json`` (every trial, plus pytest's outcome per test) and
``faults.md`` (the README's table). The fuzzers (tests/fuzz/) run in the same pytest session with more examples.
A test that fails counts its fault as not survived even where it logged no trial.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_suite(trials: int, examples: int, log: Path, junit: Path, paths: list[str]) -> tuple[int, float]:
    env = {**os.environ, "FRAMEFARM_FAULT_TRIALS": str(trials), "FRAMEFARM_FAULT_LOG": str(log),
           "FRAMEFARM_FUZZ_EXAMPLES": str(examples), "PYTHONPATH": os.environ.get("PYTHONPATH", str(REPO))}
    started = time.monotonic()
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}", *paths]
    code = subprocess.call(command, cwd=REPO, env=env)
    return code, time.monotonic() - started


def test_outcomes(junit: Path) -> dict[str, str]:
    outcomes = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        name = f"{case.get('classname')}::{case.get('name')}"
        failed = case.find("failure") is not None or case.find("error") is not None
        outcomes[name] = "skipped" if case.find("skipped") is not None else ("failed" if failed else "passed")
    return outcomes


def summarise(trials: list[dict]) -> list[dict]:
    rows: dict[str, dict] = defaultdict(lambda: {"tried": 0, "survived": 0, "frames_lost": 0, "outcomes": set()})
    for trial in trials:
        row = rows[trial["fault"]]
        row["tried"] += 1
        row["survived"] += bool(trial["survived"])
        row["frames_lost"] += int(trial["frames_lost"])
        row["outcomes"].add(trial["outcome"])
    return [{"fault": fault, **{k: v for k, v in row.items() if k != "outcomes"},
             "outcomes": sorted(row["outcomes"])} for fault, row in rows.items()]


def markdown(rows: list[dict], outcomes: dict[str, str], trials: int, seconds: float) -> str:
    lines = ["| Fault | Tried | Survived | Frames lost | How it ended |", "|---|---:|---:|---:|---|"]
    for row in rows:
        lines.append(f"| {row['fault']} | {row['tried']} | {row['survived']} | {row['frames_lost']} | "
                     f"{'; '.join(row['outcomes'])} |")
    fuzz = {k: v for k, v in outcomes.items() if "fuzz" in k}
    failed = sorted(k for k, v in outcomes.items() if v == "failed")
    lines += ["", f"{trials} trials per fault (`benchmarks/faults.py`), {seconds / 60:.1f} min; fuzz tests: "
              f"{sum(v == 'passed' for v in fuzz.values())}/{len(fuzz)} passed."]
    if failed:
        lines.append("Failed tests (their faults count as not survived): " + ", ".join(failed))
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="trials per fault (CI runs 1–3)")
    parser.add_argument("--fuzz-examples", type=int, default=2000, help="hypothesis examples per fuzz test")
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results", help="folder for the figures")
    parser.add_argument("paths", nargs="*", default=["tests/faults", "tests/fuzz"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        log, junit = Path(work) / "trials.jsonl", Path(work) / "junit.xml"
        code, seconds = run_suite(args.trials, args.fuzz_examples, log, junit, args.paths)
        trials = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
        outcomes = test_outcomes(junit) if junit.exists() else {}
    rows = summarise(trials)
    for name, outcome in outcomes.items():  # a failed test is a fault not survived, logged trials or not
        if outcome == "failed" and "faults" in name:
            rows.append({"fault": f"(test failed) {name.rsplit('::', 1)[-1]}", "tried": 1, "survived": 0,
                         "frames_lost": 0, "outcomes": ["test failed"]})
    document = {"trials_per_fault": args.trials, "seconds": round(seconds, 1), "pytest_exit": code, "faults": rows,
                "tests": outcomes, "trials": trials}
    (args.out / "faults.json").write_text(json.dumps(document, indent=2, sort_keys=True))
    table = markdown(rows, outcomes, args.trials, seconds)
    (args.out / "faults.md").write_text(table)
    print(table)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
