# The README's two commands live here: `make demo` and `make test`.
# Both create .venv on first use (and reuse it afterwards), install the package into it, then run.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test test-slow test-sharded bench setup clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) pyproject.toml
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PY) -m minimax_vl.demos.run

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# Only the sharded-training tests (FSDP2 and DeepSpeed ZeRO-3 on two CPU processes; also part of `make test`).
test-sharded: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q tests/training/test_train_sharded.py tests/training/test_sharded_init.py

bench: $(STAMP)
	$(PY) benchmarks/lightning_cpu.py

clean:
	rm -rf $(VENV) build *.egg-info
