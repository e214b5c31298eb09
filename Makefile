# The two commands of the README: `make demo` and `make test`. Both install what is needed first.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.tailorlm-installed
TAILOR := $(VENV)/bin/tailor

.PHONY: install demo test test-slow lint bench clean

$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh $(VENV) $(PYTHON)
	touch $@

install: $(STAMP)

demo: install
	$(TAILOR) demo-data --out examples/data/utility
	$(TAILOR) run examples/utility.yaml

test: install
	$(VENV)/bin/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal -m "not slow"

# End-to-end runs on the shipped pretrained models (real MiniLM, SmolLM2): minutes each on a CPU. .ci/run runs
# this tier after `make test`.
test-slow: install
	$(VENV)/bin/python -m pytest -q -n auto --maxprocesses 4 --dist worksteal -m slow

lint: install
	$(VENV)/bin/ruff check src tests benchmarks

bench: install
	$(VENV)/bin/python -m benchmarks.run --suite cpu --skip bf16  # bf16 on CPU: 11x slower, measured once in RESULTS.md

clean:
	rm -rf runs .pytest_cache .ruff_cache
