# The two commands that matter: `make demo` and `make test`. Both set themselves up on a
# fresh machine (virtualenv, Python packages, Kafka jars, dev keys, services).
#
#   make setup   .venv (python3.11) + pip install -e '.[dev]' (skipped while pyproject.toml is
#                unchanged) + bytecode of the project's packages + Kafka jars via Maven +
#                development keys under var/keys
#   make infra   hub infra up: local Kafka (KRaft) + PostgreSQL + topic catalogue
#   make test    setup + infra + pytest over tests/ + ruff check + mypy (any failure fails the target;
#                pytest's exit code 5 "no tests collected" counts as a failure too)
#   make demo    setup + infra + `hub demo` (falls back to `hub infra status` if absent)
#   make bench   setup + infra + `python -m bench` (when bench/__main__.py exists)
#   make audit   dependency audit (pip-audit, or AUDIT_ARGS='--osv-db all.zip' offline): exit 0 clean,
#                1 vulnerable, 2 vulnerability data unavailable — never a pass without data
#                (not part of `make test`, which needs no network)
#   make faults  the release gate: python -m hub.devtools.faults --long (its own 3-broker KRaft
#                cluster and PostgreSQL; seeded faults; exit 0 only when nothing was lost,
#                conflicting, different, duplicated at the EHR or hung). FAULTS_ARGS adds options.
#   make down    hub infra down (data stays under var/)

SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
HUB := $(VENV)/bin/hub
INSTALLED := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: setup infra test demo bench down lint audit faults
FAULTS_ARGS ?=
AUDIT_ARGS ?=

# compileall: the editable install leaves the project's own modules without bytecode, and
# where PYTHONDONTWRITEBYTECODE is set (as on CI and in many shells) every `hub` process, every
# rebuild worker and every CLI test would compile them again (≈0.8 s per process measured);
# it is incremental (an up-to-date .pyc is skipped) and Python recompiles any source edited since.
setup: $(INSTALLED)
	$(PY) -m compileall -q -j 0 hub schemas connectors projections bench >/dev/null
	$(PY) -m hub.devtools.commands.infra setup

$(INSTALLED): pyproject.toml
	@test -x $(PY) || { echo "creating $(VENV) with $(PYTHON)"; $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q --upgrade pip 'setuptools>=78.1.1'
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

infra: setup
	$(HUB) infra up

test: infra
	@$(PY) -m pytest tests/ $(PYTEST_ARGS); rc=$$?; \
	$(VENV)/bin/ruff check . || rc=1; \
	$(VENV)/bin/mypy || rc=1; \
	exit $$rc

audit: $(INSTALLED)
	$(PY) -m hub.devtools.audit $(AUDIT_ARGS)

lint: $(INSTALLED)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

demo: infra
	@if $(HUB) demo --help >/dev/null 2>&1; then $(HUB) demo; else \
	  echo "hub demo is not available yet; infrastructure status:"; $(HUB) infra status; fi

bench: infra
	@if [ -f bench/__main__.py ]; then $(PY) -m bench; else echo "no benchmark yet (bench/__main__.py)"; fi

faults: setup
	$(PY) -m hub.devtools.faults --long $(FAULTS_ARGS)

down:
	@if [ -x $(HUB) ]; then $(HUB) infra down; else echo "nothing to stop (no $(VENV))"; fi
