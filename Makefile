# FITMM-pipeline: `make demo` runs the whole asset graph on the built-in demo dataset; `make test`
# runs the test suite. Both create .venv on first use and reuse it afterwards.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
# CUDA hosts: PyPI's Linux torch wheel is already CUDA-enabled; to pick a specific CUDA build, pass
# e.g. `make install TORCH_INDEX=<PyTorch wheel index URL for your CUDA version>`.
TORCH_INDEX ?=
PIP_INDEX_FLAGS := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
# Optional dependency groups of pyproject.toml. Where `nvidia-smi` finds a GPU, `nvjpeg` is added
# (torchvision, so item images are decoded on the GPU); pass EXTRAS=dev to leave it out.
comma := ,
GPU_EXTRAS := $(if $(shell nvidia-smi -L 2>/dev/null | grep GPU),$(comma)nvjpeg)
EXTRAS ?= dev$(GPU_EXTRAS)

export FITMM_HOME ?= $(CURDIR)/.fitmm
export DAGSTER_HOME ?= $(FITMM_HOME)/dagster
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

STAMP := $(VENV)/.installed-$(subst $(comma),-,$(EXTRAS))

.PHONY: install chromium demo test ui mlflow benchmark clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24"
	$(BIN)/python -m pip install --quiet $(PIP_INDEX_FLAGS) -c constraints.txt -e '.[$(EXTRAS)]'
	@touch $(STAMP)

install: $(STAMP)

$(DAGSTER_HOME)/dagster.yaml: pipelines/dagster.yaml
	@mkdir -p $(DAGSTER_HOME)
	cp pipelines/dagster.yaml $@

demo: install $(DAGSTER_HOME)/dagster.yaml
	$(BIN)/dagster asset materialize -m pipelines.definitions --select '*' --partition demo
	$(BIN)/python -m pipelines.report demo

# The browser tests drive Debian's chromium: installed here when it is missing and apt-get may (as
# root); where it cannot be, those tests are skipped with that reason.
APT_INSTALL_CHROMIUM := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser tests (at most 7 minutes)"; \
	    timeout 420 sh -c '$(APT_INSTALL_CHROMIUM) || { apt-get update -qq && $(APT_INSTALL_CHROMIUM); }' \
	      >/dev/null 2>&1; \
	  fi; \
	  command -v chromium >/dev/null 2>&1 || echo "chromium could not be installed: the browser tests will be skipped"; }

test: install chromium
	$(BIN)/python -m pytest

ui: install $(DAGSTER_HOME)/dagster.yaml
	set -m; $(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

mlflow: install
	$(BIN)/mlflow server --backend-store-uri sqlite:///$(FITMM_HOME)/mlflow.db \
	  --default-artifact-root $(FITMM_HOME)/mlartifacts --host 127.0.0.1 --port 5000

benchmark: install
	$(BIN)/python benchmarks/train_speed.py --scale 0.1

clean:
	rm -rf $(FITMM_HOME)
