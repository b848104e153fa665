# fmtune: `make run` runs the whole pipeline on this machine; `make test` runs the test suite.
# Both install what they need first (a venv with pinned-compatible packages).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)
WORKERS ?= 2
GPU ?= 0
PYTEST_ARGS ?=

.PHONY: install tools run data test test-slow bench protos manifests images e2e lint typecheck clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[all,dev]'
	$(BIN)/python -c 'import fmtune.cli, tensorflow, keras_tuner'
	rm -f $(VENV)/.installed-*
	touch $@

# Fashion-MNIST without a download: FMTUNE_DATA_DIR if set, else Debian's dataset package.
data:
	@if [ -n "$$FMTUNE_DATA_DIR" ] || [ -d /usr/share/datasets/fashion-mnist ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get install -y -qq dataset-fashion-mnist || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	else echo "no local Fashion-MNIST found: fmtune will download it as Keras does"; fi

run: install data
	$(BIN)/fmtune tune --preset quick --workers $(WORKERS) --fresh

# helm 3, helm 4 and kubectl for the chart tests, into .tools/ (git-ignored).
tools:
	./scripts/fetch-tools.sh

test: lint typecheck tools
	$(BIN)/python -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -m "slow and not e2e" $(PYTEST_ARGS)

# Benchmarks write reports/*.json and reports/*.md.
# Hours on 2 CPU cores (the accuracy part trains three presets); each part can also run alone.
bench: install data
	$(BIN)/python -m tests.bench.accuracy
	$(BIN)/python -m tests.bench.serving
	$(BIN)/python -m tests.bench.capacity
	$(BIN)/python -m tests.bench.efficiency
	$(BIN)/python -m tests.bench.report

# The client's TensorFlow-free messages, generated with protobuf 6.31 gencode (runs on protobuf 6.31+ and 7).
protos:
	$(PYTHON) -m venv .venv-protos
	.venv-protos/bin/python -m pip install --quiet 'grpcio-tools==1.75.1'
	cd src && ../.venv-protos/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. fmtune/wire/serving.proto

# The chart rendered with default values; a test fails when this drifts from the chart.
manifests: tools
	.tools/helm4 template fmtune helm --namespace default > k8s/rendered/default.yaml

# Container images with docker, or podman when there is no Docker engine (see images/build.sh).
images:
	GPU=$(GPU) images/build.sh

# End to end on a kind cluster (needs docker, kind, helm and kubectl; skips, naming what is missing).
e2e: install
	$(BIN)/python -m pytest tests/e2e -m e2e -v -rs $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check src tests

typecheck: install
	$(BIN)/mypy


clean:
	rm -rf $(VENV) .venv-protos .tools runs models .pytest_cache .ruff_cache .mypy_cache
