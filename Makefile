# Every target works on a fresh machine by itself: it creates .venv, installs the
# pinned requirements (reused while requirements.txt is unchanged) and builds
# pyflowops._C (rebuilt when csrc/, setup.py or FORCE_CUDA change).
#   make demo    correlation demo (speed and memory of both lookups vs the reference), the
#                gradient-regularization demo (denoise a synthetic face's flow; demo_out/gradreg_demo.png)
#                the splatting demo (a Gaussian head turning and its exact flow; demo_out/splat_demo.png)
#                then the main job: a synthetic facial flow set, DecFlow trained on it (both stages),
#                evaluated against Farneback, DIS and TV-L1, one inference: demo/REPORT.md, demo/model.pt
#                (DEMO_FAST=1: the same on a few tiny pairs, what CI runs)
#   make test    the test suite
#   make bench   benchmarks + benchmarks/RESULTS.md (tables and plots)
# FORCE_CUDA=1 compiles the CUDA kernels too (CI does); FORCE_CUDA=0 skips them.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FORCE_CUDA ?= 0
export FORCE_CUDA
export MAX_JOBS ?= 2
export TORCH_CUDA_ARCH_LIST ?= 8.0;9.0+PTX
DEPS_STAMP := $(VENV)/.stamp-deps
BUILD_STAMP := $(VENV)/.stamp-build-cuda$(FORCE_CUDA)
SOURCES := setup.py pyproject.toml $(shell find csrc -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh')

.PHONY: all demo test bench build clean

all: build

$(DEPS_STAMP): requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(BUILD_STAMP): $(DEPS_STAMP) $(SOURCES)
	rm -f $(VENV)/.stamp-build-*
	$(PY) -m pip install --quiet --no-build-isolation --no-deps -e .
	touch $@

build: $(BUILD_STAMP)

demo: build
	$(PY) -m benchmarks.demo
	$(PY) -m benchmarks.demo_gradreg
	$(PY) -m benchmarks.demo_splat
	$(PY) -m pyflowops_models.demo --out demo

test: build
	$(PY) -m pytest tests -q

bench: build
	$(PY) -m pytest benchmarks -q --benchmark-json=benchmarks/.raw/results.json
	$(PY) -m benchmarks.report benchmarks/.raw/results.json

clean:
	rm -rf build *.egg-info pyflowops/_C*.so $(VENV)/.stamp-build-*
