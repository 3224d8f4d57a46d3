# The two set-up commands of the README: `make study` and `make test`. Both build .venv from nothing
# (pinned by pyproject.toml + requirements.lock) and reuse it while those files are unchanged.
# `make test-fast` (tests/unit only, no snakemake) is the developer's edit-test loop.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= all
PYTEST_ARGS ?=
# pytest-xdist workers: one per core. Measured on a fresh clone of this 2-core machine (2026-12-07, b1a574b):
# the suite in 548 s with 2 workers and 683 s with 3, where torch's threads in the third worker's tests and
# the jobs they start compete for the cores. (Before the tests' stand-in scontrol, tests/no_slurm, a third
# worker filled the 2 s waits of every snakemake start and was the faster: 565 s against 594 s.)
TEST_WORKERS ?= 2

.PHONY: study test test-fast report clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip==25.3
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

# The default study (phantom cohort) end to end: every table and figure, then the HTML report.
study: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES)
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES) --report results/report.html

# Every test (the one CI runs): tests/unit and tests/workflow.
test: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadgroup \
		--no-loadscope-reorder $(PYTEST_ARGS)

# The unit tests only: the library on small inputs, no snakemake.
test-fast: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest -n $(TEST_WORKERS) tests/unit $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
