# Two commands: `make reproduce` (whole pipeline, embedded default) and `make test` (test suite).
# Both create the virtual environment in .venv when missing and install everything pinned.
VENV ?= .venv
PYTHON ?= $(shell command -v python3.11 || command -v python3)
CORES ?= all
CONFIG ?=
SNAKEMAKE_ARGS ?=
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: reproduce rehearsal test test-fast install system-deps test-system-deps figures report lint dry-run benchmark

# the whole DAG, then the HTML report, then where everything is and one headline per stage
reproduce: install system-deps
	@start=$$(date +%s); \
	snakemake --cores $(CORES) $(if $(CONFIG),--configfile $(CONFIG)) --report results/report.html \
		--report-after-run $(SNAKEMAKE_ARGS) && \
	$(PY) workflow/scripts/summary.py --results results --seconds $$(( $$(date +%s) - start ))

# the paper preset's code paths on CPU, offline, in minutes: data written locally in the real
# layouts, then the paper preset overlaid by workflow/presets/rehearsal.yaml (docs/paper-scale.md)
REHEARSAL_CONFIGS := workflow/presets/paper.yaml workflow/presets/rehearsal.yaml
rehearsal: install
	@start=$$(date +%s); \
	$(PY) workflow/scripts/write_rehearsal_data.py --configfile config.yaml $(REHEARSAL_CONFIGS) && \
	snakemake --cores $(CORES) all stage --configfile $(REHEARSAL_CONFIGS) $(SNAKEMAKE_ARGS) && \
	$(PY) workflow/scripts/summary.py --results results --seconds $$(( $$(date +%s) - start ))

test: install test-system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

# the edit-test loop: no smoke DAG, no SLURM, no browser (tests marked slow by tests/conftest.py)
test-fast: install
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

install: $(VENV)/.installed

$(VENV)/.installed: requirements.txt requirements-dev.txt requirements-assets-nodeps.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-assets-nodeps.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

# Debian packages the default run needs (Fashion-MNIST); prints a clear message where apt is unavailable.
system-deps:
	bash workflow/scripts/install_system_deps.sh run

# ... plus what the tests need: local SLURM daemons and headless Chromium.
test-system-deps:
	bash workflow/scripts/install_system_deps.sh test

figures: install
	snakemake --cores $(CORES) figures $(if $(CONFIG),--configfile $(CONFIG))

report: install
	snakemake --cores $(CORES) --report results/report.html $(if $(CONFIG),--configfile $(CONFIG))

lint: install
	$(VENV)/bin/ruff check src tests benchmarks workflow/scripts
	snakemake --lint

dry-run: install
	snakemake -n $(if $(CONFIG),--configfile $(CONFIG))

benchmark: install
	$(PY) benchmarks/bench_dag.py
