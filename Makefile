# `make demo` installs into .venv and runs the main job on the built-in corpus;
# `make test` installs and runs the test suite (what CI runs).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install demo test test-fast bench corpus clean

$(BIN)/robust: pyproject.toml
	@echo "Installing robust and its dependencies into $(VENV) (torch, norse, ivon-opt, ...): about 1.5 minutes here, longer on a first download"
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -e '.[dev,report,datasets]'  # not -q: pip's lines are the progress
	@# SynSense's Xylo simulator, for tests/test_xylo.py's cross-check; optional: where it does not build, the test skips
	-$(BIN)/pip install -q 'xylosim>=0.1' || echo "xylosim did not install: tests/test_xylo.py will skip"
	touch $(BIN)/robust

install: $(BIN)/robust

demo: install
	$(BIN)/robust demo

test: install
	$(BIN)/python -m pytest

# Everything but the tests marked slow: under 2 minutes on 2 cores, for the edit-test loop.
test-fast: install
	$(BIN)/python -m pytest -m "not slow"

bench: install
	$(BIN)/python -m benchmarks.bench_forward

# Regenerates the shipped corpus bit-for-bit (needs Debian's espeak-ng).
corpus: install
	$(BIN)/python -m robustness.data.make_tts_digits --out robustness/data/builtin/tts_digits.npz

clean:
	rm -rf $(VENV) .pytest_cache robust-results.db
