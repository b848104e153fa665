# fmtune: `make run` runs the whole pipeline on this machine; `make test` runs the test suite.
# Both install what they need first: a venv with the exact versions of the lock (requirements/).
# `make help` lists the targets.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# The full stack's lock (extras all and dev): linux x86_64, Python 3.11, with hashes.
LOCK   := requirements/all-dev.txt
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml $(LOCK) | cksum | cut -d' ' -f1)
PIP_VERSION := 26.3
UV_VERSION  := 0.13.9
WORKERS ?= 2
GPU ?= 0
PYTEST_ARGS ?=
# What `make run`, `make serve` and `make predict` share (the defaults are the config's).
DATA_DIR   ?=
WORKDIR    ?= runs
MODEL_REPO ?= models
GRPC_PORT  ?= 8500
REST_PORT  ?= 8501
ARGS       ?=

.PHONY: help install lock tools run data serve predict test coverage test-slow bench protos manifests images e2e lint \
	typecheck clean

install: $(STAMP) ## the venv (.venv) from the lock, then fmtune itself (editable)

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z0-9-]+):.*## /\1\t/' | expand -t 12

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet 'pip==$(PIP_VERSION)'
	$(BIN)/python -m pip install --quiet --progress-bar off --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -c 'import fmtune.cli, tensorflow, keras_tuner'
	rm -f $(VENV)/.installed-*
	touch $@

# Re-resolves after a change to pyproject.toml, keeping every pin it can; UPGRADE=1 takes the newest
# releases allowed. The other locks are subsets of the full one, at the same versions.
LOCK_FLAGS = --quiet --generate-hashes --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	--custom-compile-command 'make lock'
lock: ## refresh the locks in requirements/ (UPGRADE=1: newest allowed releases)
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/python -m pip install --quiet 'uv==$(UV_VERSION)'
	.venv-lock/bin/uv pip compile pyproject.toml --extra all --extra dev $(LOCK_FLAGS) $(if $(UPGRADE),--upgrade) \
		-o $(LOCK)
	.venv-lock/bin/uv pip compile pyproject.toml --extra all $(LOCK_FLAGS) -c $(LOCK) -o requirements/all.txt
	.venv-lock/bin/uv pip compile pyproject.toml --extra client $(LOCK_FLAGS) -c $(LOCK) -o requirements/client.txt
	.venv-lock/bin/uv pip compile requirements/gpu.in $(LOCK_FLAGS) -c requirements/all.txt -o requirements/gpu.txt
	.venv-lock/bin/uv pip compile pyproject.toml --extra bench $(LOCK_FLAGS) -c $(LOCK) -o requirements/bench.txt

# Fashion-MNIST without a download: DATA_DIR or FMTUNE_DATA_DIR if set, else Debian's dataset package.
data: ## Fashion-MNIST from DATA_DIR or FMTUNE_DATA_DIR, else Debian's dataset package
	@if [ -n "$(DATA_DIR)" ] || [ -n "$$FMTUNE_DATA_DIR" ] || [ -d /usr/share/datasets/fashion-mnist ]; then exit 0; fi; \
	if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		echo "installing Debian's dataset-fashion-mnist"; \
		(apt-get install -y -qq dataset-fashion-mnist || \
		 (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)) >/dev/null; \
	else echo "no local Fashion-MNIST found: fmtune will download it as Keras does"; fi

run: install data ## the pipeline on this machine: tune (quick preset), retrain, evaluate, export to models/
	$(BIN)/fmtune tune --preset quick --workers $(WORKERS) --fresh --workdir $(WORKDIR) --model-repo $(MODEL_REPO) \
		$(if $(DATA_DIR),--data-dir $(DATA_DIR)) $(ARGS)

serve: install ## serve models/ on this machine (gRPC 8500, REST 8501) until Ctrl-C
	$(BIN)/fmtune serve --model-repo $(MODEL_REPO) --host 127.0.0.1 --grpc-port $(GRPC_PORT) --rest-port $(REST_PORT)

predict: install ## 8 random test images through the served model (waits up to 60 s for it)
	$(BIN)/fmtune predict --target localhost:$(GRPC_PORT) --workdir $(WORKDIR) --sample 8 --wait 60

# helm 3, helm 4 and kubectl for the chart tests, into .tools/ (git-ignored).
tools: ## helm 3, helm 4 and kubectl into .tools/, and Debian's chromium and prometheus for the tests that drive them
	./scripts/fetch-tools.sh
	./scripts/install-apt.sh chromium=/usr/bin/chromium prometheus=/usr/bin/prometheus

test: lint typecheck tools ## lint, typecheck, then the test suite without the slow tests
	$(BIN)/python -m pytest -m "not slow" --durations=20 $(PYTEST_ARGS)

# Reported, not enforced: what the fast suite runs of fmtune, its subprocesses included.
coverage: install tools ## the fast suite under coverage: reports/coverage.md, per package
	$(BIN)/python -m pytest -m "not slow" --cov=fmtune --cov-report= $(PYTEST_ARGS)
	mkdir -p build
	$(BIN)/coverage json -q -o build/coverage.json
	$(BIN)/python scripts/coverage_by_package.py build/coverage.json > reports/coverage.md
	cat reports/coverage.md

test-slow: install ## the slow tests (image build, long runs)
	$(BIN)/python -m pytest -m "slow and not e2e" $(PYTEST_ARGS)

# Benchmarks write reports/*.json and reports/*.md.
# Hours on 2 CPU cores (the accuracy part trains three presets); each part can also run alone.
BENCH_STAMP := $(VENV)/.bench-$(shell cat requirements/bench.txt | cksum | cut -d' ' -f1)
$(BENCH_STAMP): $(STAMP) requirements/bench.txt
	$(BIN)/python -m pip install --quiet --progress-bar off --require-hashes -r requirements/bench.txt
	rm -f $(VENV)/.bench-* && touch $@

bench: install $(BENCH_STAMP) data ## the benchmarks into reports/ (hours on 2 cores)
	$(BIN)/python -m tests.bench.accuracy --baselines --shorter
	$(BIN)/python -m tests.bench.elpv
	$(BIN)/python -m tests.bench.precision
	$(BIN)/python -m tests.bench.serving
	$(BIN)/python -m tests.bench.capacity
	$(BIN)/python -m tests.bench.efficiency
	$(BIN)/python -m tests.bench.report

# The client's TensorFlow-free messages, generated with protobuf 6.31 gencode (runs on protobuf 6.31+ and 7).
protos: ## regenerate the client's gRPC messages
	$(PYTHON) -m venv .venv-protos
	.venv-protos/bin/python -m pip install --quiet 'grpcio-tools==1.75.1'
	cd src && ../.venv-protos/bin/python -m grpc_tools.protoc -I . --python_out=. --pyi_out=. fmtune/wire/serving.proto

# The chart rendered with default values; a test fails when this drifts from the chart.
manifests: tools ## render the chart into k8s/rendered/
	.tools/helm4 template fmtune helm --namespace default > k8s/rendered/default.yaml

# Container images with docker, or podman when there is no Docker engine (see images/build.sh).
images: ## build the container images (GPU=1: the CUDA one too)
	GPU=$(GPU) images/build.sh

# End to end on a kind cluster (needs docker, kind, helm and kubectl; skips, naming what is missing).
e2e: install ## end to end on a kind cluster
	$(BIN)/python -m pytest tests/e2e -m e2e -v -rs $(PYTEST_ARGS)

lint: install ## ruff
	$(BIN)/ruff check src tests

typecheck: install ## mypy
	$(BIN)/mypy


clean: ## remove the venvs, tools, runs and models
	rm -rf $(VENV) .venv-protos .venv-lock .tools runs models .pytest_cache .ruff_cache .mypy_cache
