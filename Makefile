# Two commands for a fresh clone: `make demo` and `make test`. Both create or refresh .venv/ first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.framefarm-installed
# A CPU build of torch, installed before anything else so no dependency pulls a multi-GB CUDA build.
# On a GPU box: make TORCH_SPEC="torch==2.9.1 --index-url https://download.pytorch.org/whl/cu128" ...
TORCH_SPEC ?= torch==2.13.0
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test venv constraints clean browser postgres

# The venv is stale when the project's dependency files change (make compares timestamps with the stamp file)
# or when its interpreter no longer runs (Python upgraded or moved): then it is rebuilt from scratch.
$(STAMP): pyproject.toml requirements/constraints.txt Makefile
	@if [ -x $(BIN)/python ] && ! $(BIN)/python -c 'import sys' 2>/dev/null; then rm -rf $(VENV); fi
	@[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q "$(TORCH_SPEC)"
	$(PIP) install -q -c requirements/constraints.txt -e ".[test,s3,dask]"
	$(BIN)/python -c "import framefarm.cli, torch, diffusers, prefect; from framefarm.video import ffmpeg_exe, require_encoders; from framefarm.video.codecs import CODECS; require_encoders(*{c.encoder for c in CODECS.values()}); print('framefarm ready: torch', torch.__version__, '| ffmpeg', ffmpeg_exe())"
	@touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/framefarm demo

# Two pytest workers: much of the suite waits on servers, subprocesses and ffmpeg, so two keep both cores busy (a third
# was no faster: 15.8 min against 14.8). The integration tests (a real `prefect server start` with workers) run one
# after another on one worker.
test: $(STAMP) browser postgres
	$(BIN)/python -m pytest -n 2 --dist loadgroup

# Headless Chromium for the job-report test (Debian's package; the test skips, saying why, where it can't install).
browser:
	@command -v chromium >/dev/null 2>&1 || { command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) ; } || \
		echo "chromium not installed: the report's browser test will be skipped"

# PostgreSQL for the multi-worker farm test (Debian's package; the test starts its own throw-away cluster and skips,
# saying why, where it can't install). Debian keeps initdb in /usr/lib/postgresql/<version>/bin, off PATH.
postgres:
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
		{ command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ] && \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) ; } || \
		echo "postgresql not installed: the multi-worker PostgreSQL farm test will be skipped"

constraints: $(STAMP)
	$(PIP) freeze --exclude-editable | grep -viE '^(framefarm)' | sed -E 's/\+cpu//' > requirements/constraints.txt.new
	mv requirements/constraints.txt.new requirements/constraints.txt

clean:
	rm -rf $(VENV) renders .pytest_cache
