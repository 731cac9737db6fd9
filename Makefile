# Two entry points: `make demo` and `make test`. Both build .venv by themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel of this version is on every machine (see README).
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e '.[torch,dev]'
	touch $(STAMP)

demo: $(STAMP)
	@echo "== LeNet-300-100 on digits, 95% global magnitude pruning: direct vs effective =="
	$(BIN)/onnxprune analyze models/mlp_digits_pruned95.onnx
	@echo
	@echo "== small residual CNN on digits, position-level (exact) analysis =="
	$(BIN)/onnxprune analyze models/cnn_digits.onnx --exact

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

lint: $(STAMP)
	$(BIN)/ruff check onnxprune tests benchmarks models
	$(BIN)/ruff format --check onnxprune tests benchmarks models

format: $(STAMP)
	$(BIN)/ruff format onnxprune tests benchmarks models
	$(BIN)/ruff check --fix onnxprune tests benchmarks models

bench: $(STAMP)
	$(BIN)/python benchmarks/analyze.py
	$(BIN)/python benchmarks/prune.py

clean:
	rm -rf $(VENV) build *.egg-info
