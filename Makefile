# Entry points: `make demo`, `make test` (the whole suite) and `make check` (the quick loop).
# Each builds .venv by itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test check lint format bench proto clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first, pinned: the CPU wheel of this version is on every machine (see README).
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e '.[torch,dev,ray]'
	touch $(STAMP)

DEMO := demo-report
DEMO_METHODS := magnitude/global,magnitude/erk,lamp/global
DEMO_SPARSITIES := 0.5,0.8,0.9,0.95,0.98

demo: $(STAMP)
	@echo "== 1. analyze the bundled residual CNN (digits), position-level =="
	$(BIN)/onnxprune analyze models/cnn_digits.onnx --exact
	@echo
	@echo "== 2. sweep 3 methods x 5 sparsities: prune, validate on the digits test split =="
	$(BIN)/onnxprune sweep models/cnn_digits.onnx --data models/digits_test.npz \
		--methods $(DEMO_METHODS) --sparsities $(DEMO_SPARSITIES) --out $(DEMO) --jobs 2
	@echo
	@echo "== 3. a deployment gate on one pruned model: at most 5 points of top-1 lost =="
	$(BIN)/onnxprune validate $(DEMO)/lamp_global_0.5.onnx --data models/digits_test.npz \
		--baseline models/cnn_digits.onnx --max-accuracy-drop 0.05
	@echo
	@echo "== 4. structured: remove 25% of the channels (residual groups together), validate (no fine-tuning) =="
	$(BIN)/onnxprune prune models/cnn_digits.onnx -o $(DEMO)/structured_l1_0.25.onnx \
		--structured l1 --sparsity 0.25
	$(BIN)/onnxprune validate $(DEMO)/structured_l1_0.25.onnx --data models/digits_test.npz \
		--baseline models/cnn_digits.onnx
	@echo
	@echo "== 5. compact the 90% magnitude model: dead channels out, outputs unchanged =="
	$(BIN)/onnxprune compact $(DEMO)/magnitude_global_0.9.onnx \
		-o $(DEMO)/magnitude_global_0.9.compact.onnx
	$(BIN)/onnxprune validate $(DEMO)/magnitude_global_0.9.compact.onnx \
		--data models/digits_test.npz --baseline $(DEMO)/magnitude_global_0.9.onnx
	@echo
	@echo "== 6. the report =="
	$(BIN)/onnxprune report $(DEMO)/sweep.json --html $(DEMO)/index.html --markdown $(DEMO)/README.md

# Every test, the docstring examples and every property at its full example count
# (HYPOTHESIS_PROFILE, tests/conftest.py).
test: $(STAMP)
	HYPOTHESIS_PROFILE=full $(BIN)/python -m pytest -n 2 -q

# The edit-test loop, under 3 minutes on 2 cores: no test marked slow, a few examples per property.
check: $(STAMP)
	HYPOTHESIS_PROFILE=dev $(BIN)/python -m pytest -n 2 -q -m "not slow"

lint: $(STAMP)
	$(BIN)/ruff check onnxprune tests benchmarks models proto container
	$(BIN)/ruff format --check onnxprune tests benchmarks models proto container

format: $(STAMP)
	$(BIN)/ruff format onnxprune tests benchmarks models proto container
	$(BIN)/ruff check --fix onnxprune tests benchmarks models proto

# The Python gRPC code of proto/onnxprune/v1/*.proto, committed under onnxprune/service/_proto
# (grpc_tools.protoc, then imports pointed at onnxprune.service._proto; tests/server/test_proto.py checks it).
proto: $(STAMP)
	$(BIN)/python proto/generate.py onnxprune/service/_proto

# Every benchmark in turn, then one table (figure, target, measured, ok); exits 1 at the end if
# any target was missed (benchmarks/run_all.py). Each script also runs alone.
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO)
