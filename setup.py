"""Build pyflowops and its compiled extension ``pyflowops._C``.

The CPU kernels are always built. The CUDA kernels are built when

* ``FORCE_CUDA=1``: always (fails with a clear message without nvcc or a CUDA torch);
* ``FORCE_CUDA=0``: never;
* unset: when nvcc is found, torch is a CUDA build and a GPU is visible.

``TORCH_CUDA_ARCH_LIST`` picks the GPU architectures; unset, it is the visible
GPUs' architectures, or ``8.0;9.0+PTX`` without a GPU (sm_80 code also runs on
8.6/8.9, the compute_90 PTX is JIT-compiled on newer GPUs). ``MAX_JOBS`` limits
ninja's parallel compile jobs. Install with ``pip install --no-build-isolation .``
(or ``-e .``) so the extension is built against the torch already installed.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = "csrc"
DEFAULT_CUDA_ARCHS = "8.0;9.0+PTX"

# torch guesses CUDA_HOME when its cpp_extension module is imported; an nvcc
# wrapper on PATH (e.g. /usr/local/bin/nvcc) would make it guess /usr/local.
if not (os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")) and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

import torch  # noqa: E402  (after CUDA_HOME is settled)


def _env_flag(name: str) -> bool | None:
    value = os.environ.get(name, "").strip().lower()
    if value == "":
        return None
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise SystemExit(f"pyflowops setup: {name} must be 0 or 1, got {os.environ[name]!r}")


def _find_nvcc() -> str | None:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    if home:  # torch compiles with $CUDA_HOME/bin/nvcc
        nvcc = os.path.join(home, "bin", "nvcc")
        return nvcc if os.path.isfile(nvcc) and os.access(nvcc, os.X_OK) else None
    return shutil.which("nvcc")


def _with_cuda() -> tuple[bool, str]:
    """(build CUDA?, why)."""
    force = _env_flag("FORCE_CUDA")
    if force is False:
        return False, "FORCE_CUDA=0"
    nvcc = _find_nvcc()
    if force:
        if torch.version.cuda is None:
            raise SystemExit(
                f"pyflowops setup: FORCE_CUDA=1 but torch {torch.__version__} is not a CUDA build; "
                "install a CUDA build of torch or unset FORCE_CUDA."
            )
        if nvcc is None:
            raise SystemExit(
                "pyflowops setup: FORCE_CUDA=1 but nvcc was not found "
                f"(CUDA_HOME={os.environ.get('CUDA_HOME') or os.environ.get('CUDA_PATH')!r}); "
                "install the CUDA toolkit and set CUDA_HOME to its root (the folder holding bin/nvcc)."
            )
        return True, f"FORCE_CUDA=1, nvcc {nvcc}"
    if nvcc is None:
        return False, "nvcc not found (set CUDA_HOME or FORCE_CUDA=1)"
    if torch.version.cuda is None:
        return False, f"torch {torch.__version__} is not a CUDA build"
    if not torch.cuda.is_available():
        return False, "no GPU visible (FORCE_CUDA=1 builds the CUDA kernels anyway)"
    return True, f"nvcc {nvcc}, GPU visible"


def _cuda_arch_list() -> str:
    """TORCH_CUDA_ARCH_LIST, defaulted here so the build records what it compiled for."""
    archs = os.environ.get("TORCH_CUDA_ARCH_LIST", "").strip()
    if archs and archs != "native":
        return archs
    caps = set()
    if torch.cuda.is_available():
        # As torch does: every visible GPU, clamped to the newest arch this torch supports.
        supported = [
            (int(m.group(1)) // 10, int(m.group(1)) % 10)
            for a in torch.cuda.get_arch_list()
            if (m := re.match(r"sm_(\d+)", a))
        ]
        for i in range(torch.cuda.device_count()):
            cap = torch.cuda.get_device_capability(i)
            caps.add(min(cap, max(supported)) if supported else cap)
    archs = ";".join(f"{a}.{b}" for a, b in sorted(caps)) + "+PTX" if caps else DEFAULT_CUDA_ARCHS
    os.environ["TORCH_CUDA_ARCH_LIST"] = archs
    return archs


def _pip_cuda_include_dirs(cuda_home: str) -> list[str]:
    """Headers ATen's CUDA headers want (cusparse.h, cublas_v2.h, ...) when the toolkit lacks them.

    A minimal toolkit (nvcc + cudart) does not ship the math libraries' headers;
    torch's CUDA wheels install them under site-packages/nvidia/*/include.
    """
    if os.path.isfile(os.path.join(cuda_home, "include", "cusparse.h")):
        return []
    try:
        import nvidia  # namespace package of the nvidia-* wheels torch depends on
    except ImportError:
        return []
    dirs = []
    for base in list(getattr(nvidia, "__path__", [])):
        for inc in sorted(glob.glob(os.path.join(base, "*", "include"))):
            if any(os.path.isfile(os.path.join(inc, h)) for h in ("cusparse.h", "cublas_v2.h")):
                dirs.append(inc)
    return dirs


def _sources(with_cuda: bool) -> list[str]:
    """csrc/**/*.cpp always; *.cu and *_cuda*.cpp (CUDA-only host code) with CUDA."""
    cpp = sorted(glob.glob(os.path.join(CSRC, "**", "*.cpp"), root_dir=ROOT, recursive=True))
    cuda_only = [p for p in cpp if "_cuda" in os.path.basename(p)]
    sources = [p for p in cpp if p not in cuda_only]
    if with_cuda:
        sources += cuda_only
        sources += sorted(glob.glob(os.path.join(CSRC, "**", "*.cu"), root_dir=ROOT, recursive=True))
    return sources


def _extensions():
    with_cuda, why = _with_cuda()
    # Imported only now: CUDA_HOME is settled, and a CPU-only build touches nothing CUDA-specific.
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension

    if os.name == "nt":
        cxx_flags, link_flags = ["/O2", "/openmp"], []
    elif sys.platform == "darwin":  # Apple clang has no -fopenmp: at::parallel_for runs serially
        cxx_flags, link_flags = ["-O3"], []
    else:
        # -fopenmp matters: at::parallel_for is an inline OpenMP template, serial without it.
        # -g0: no debug info (Python's default CFLAGS add -g: 20x larger objects, slower builds).
        cxx_flags, link_flags = ["-O3", "-g0", "-fopenmp"], ["-fopenmp"]

    archs = _cuda_arch_list() if with_cuda else ""
    cuda_version = torch.version.cuda or ""
    # String macros for build_info.cpp only (the C++ compiler; they never reach nvcc).
    # torch quotes each flag for ninja's shell, so the quotes reach the compiler.
    cxx_flags += [
        f'-DPFO_TORCH_VERSION="{torch.__version__}"',
        f'-DPFO_CUDA_VERSION="{cuda_version}"',
        f'-DPFO_CUDA_ARCHS="{archs}"',
    ]
    common = dict(
        name="pyflowops._C",
        sources=_sources(with_cuda),
        include_dirs=[os.path.join(ROOT, CSRC)],
        define_macros=[("PFO_WITH_CUDA", "1" if with_cuda else "0")],
        extra_link_args=link_flags,
    )
    if with_cuda:
        ext = CUDAExtension(
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-lineinfo"]},
            **common,
        )
        cuda_home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH") or ""
        ext.include_dirs += _pip_cuda_include_dirs(cuda_home)  # after the toolkit's own include dir
        print(f"pyflowops setup: building CUDA kernels ({why}) for TORCH_CUDA_ARCH_LIST={archs}")
    else:
        ext = CppExtension(extra_compile_args={"cxx": cxx_flags}, **common)
        print(f"pyflowops setup: CPU-only build ({why})")
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _extensions()

setup(
    name="pyflowops",
    version="0.1.0",
    description="Correlation, Gaussian splatting and gradient regularization ops for facial optical flow",
    python_requires=">=3.10",
    # models/ installs as `pyflowops_models`: no generic top-level `models` lands in users' environments.
    packages=find_packages(include=["pyflowops*"])
    + ["pyflowops_models"]
    + [f"pyflowops_models.{p}" for p in find_packages(where="models")],
    package_dir={"pyflowops_models": "models"},
    package_data={"pyflowops_models": ["configs/*.yaml", "weights/*.pt"]},
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
