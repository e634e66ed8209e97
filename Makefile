# `make verify` (the main job), `make test` and `make bench` each create .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: verify test mutants seeds bench demo clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e ".[verify,test]"
	touch $(STAMP)

verify: $(STAMP)
	mkdir -p reports
	$(PY) -m verification --json reports/verify.json $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

# the bench extra (matplotlib for the plot, threadpoolctl for the BLAS report) on top of .venv
$(VENV)/.bench-installed: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[bench]"
	touch $@

bench: $(VENV)/.bench-installed
	$(PY) -m benchmarks $(ARGS)

# The models trained with their hand-written backward: the demo extra (scikit-learn's digits,
# matplotlib for the curves) on top of .venv; writes reports/demo.json and docs/demo/*.png
$(VENV)/.demo-installed: $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e ".[demo]"
	touch $@

demo: $(VENV)/.demo-installed
	mkdir -p reports
	$(PY) -m demo $(ARGS)

# The self-proof: every planted bug killed, every correct variant accepted (the kill matrix).
mutants: $(STAMP)
	mkdir -p reports
	$(PY) -m verification mutants --json reports/mutants.json $(ARGS)

# No false failures: the whole catalogue over 20 seeds (about 20 minutes on 2 cores).
seeds: $(STAMP)
	mkdir -p reports
	$(PY) -m verification seeds --count 20 --json reports/seeds.json $(ARGS)

clean:
	rm -rf $(VENV) reports .pytest_cache
