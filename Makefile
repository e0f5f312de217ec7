# Every target works on a fresh machine by itself: it creates .venv, installs the
# pinned requirements (reused while requirements.txt is unchanged) and builds
# pyflowops._C (rebuilt when csrc/, setup.py or FORCE_CUDA change).
#   make demo    correlation demo (speed and memory of both lookups vs the reference), the
#                gradient-regularization demo (denoise a synthetic face's flow; demo_out/gradreg_demo.png)
#                the splatting demo (a Gaussian head turning and its exact flow; demo_out/splat_demo.png)
#                then the main job: a synthetic facial flow set, DecFlow pretrained on generic motion, then
#                trained on it (both stages),
#                evaluated against Farneback, DIS and TV-L1, one inference: demo/REPORT.md, demo/model.pt
#                (DEMO_FAST=1: the same on a few tiny pairs, what CI runs)
#   make test    the test suite
#   make bench   benchmarks + benchmarks/RESULTS.md (tables and plots)
#   make test-oldest-torch  the error and corr tests against the oldest torch of pyproject.toml's
#                range, in its own .venv-oldest with its own build (not run by CI; FORCE_CUDA=1 on a GPU)
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

.PHONY: all demo test bench build clean test-oldest-torch

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

# The oldest torch of pyproject.toml's `torch>=2.11,<2.15` (PyPI's is a CUDA build, several GB with its
# CUDA libraries). The sources are copied (timestamps kept, so ninja rebuilds only what changed) into
# .venv-oldest/src and built there: pyflowops/_C*.so and build/ stay .venv's. On a machine that already
# has that torch and no network: OLDEST_VENV_FLAGS=--system-site-packages OLDEST_PINS= (pip then finds
# everything installed).
OLDEST_TORCH ?= 2.11.0
OLDEST_PINS ?= numpy==2.4.6 ninja==1.13.2 pytest==9.2.0 expecttest==0.3.0
OLDEST_VENV_FLAGS ?=
OLDEST_TESTS ?= tests/test_corr_errors.py tests/test_gradreg_errors.py tests/test_splat_errors.py tests/test_cpp_checks.py \
    tests/test_corr.py
# torch 2.11's wrap_triton refuses the Triton interpreter's functions, so the CPU-only triton-interp cases
# cannot run there; on a GPU the triton-cuda cases do.
OLDEST_PYTEST_ARGS ?= -k 'not triton-interp'
OLDEST_VENV := .venv-oldest
OLDEST_SRC := $(OLDEST_VENV)/src

test-oldest-torch:
	test -x $(OLDEST_VENV)/bin/python || $(PYTHON) -m venv $(OLDEST_VENV_FLAGS) $(OLDEST_VENV)
	echo '*' > $(OLDEST_VENV)/.gitignore
	$(OLDEST_VENV)/bin/python -m pip install --quiet torch==$(OLDEST_TORCH) 'setuptools>=77,<82' $(OLDEST_PINS)
	mkdir -p $(OLDEST_SRC)
	rm -rf $(OLDEST_SRC)/csrc $(OLDEST_SRC)/pyflowops $(OLDEST_SRC)/models $(OLDEST_SRC)/tests
	cp -Rp setup.py pyproject.toml README.md csrc pyflowops models tests $(OLDEST_SRC)/
	rm -f $(OLDEST_SRC)/pyflowops/_C*.so
	cd $(OLDEST_SRC) && ../bin/python setup.py --quiet build_ext --inplace
	cd $(OLDEST_SRC) && ../bin/python -c 'import torch, pyflowops; print(torch.__version__, pyflowops.build_info())'
	cd $(OLDEST_SRC) && ../bin/python -m pytest -q -x -p no:cacheprovider $(OLDEST_PYTEST_ARGS) $(OLDEST_TESTS)

clean:
	rm -rf build *.egg-info pyflowops/_C*.so $(VENV)/.stamp-build-*
