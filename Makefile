# The two set-up commands of the README: `make study` and `make test`. Both build .venv from nothing
# (pinned by pyproject.toml + requirements.lock) and reuse it while those files are unchanged.
PYTHON ?= python3.11
VENV := .venv
STAMP := $(VENV)/.installed
CORES ?= all
PYTEST_ARGS ?=

.PHONY: study test report clean-venv

$(STAMP): pyproject.toml requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip==25.3
	$(VENV)/bin/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

# The default study (phantom cohort) end to end: every table and figure, then the HTML report.
study: $(STAMP)
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES)
	$(VENV)/bin/snakemake --profile profiles/default --cores $(CORES) --report results/report.html

test: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/python -m pytest $(PYTEST_ARGS)

clean-venv:
	rm -rf $(VENV)
