"""RAFT's own correlation blocks, the peer the GPU table compares against.

``corr_module()`` imports ``core/corr.py`` of the RAFT checkout in ``../shared/peers/raft`` (or
``PYFLOWOPS_RAFT_PEER``) as a module of its own: RAFT imports ``utils.utils`` from ``core/``, so
``core/`` is on ``sys.path`` only while it loads. ``AlternateCorrBlock`` needs RAFT's CUDA
extension; ``alt_cuda_corr()`` compiles ``alt_cuda_corr/`` with ``torch.utils.cpp_extension.load``
(once per machine, cached by torch) and hands it to that module. Benchmarks only: nothing here is
part of pyflowops.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def peer_dir() -> Path:
    """The RAFT checkout: ``$PYFLOWOPS_RAFT_PEER`` or ``<project>/../shared/peers/raft``."""
    return Path(os.environ.get("PYFLOWOPS_RAFT_PEER", ROOT.parent / "shared" / "peers" / "raft"))


def available() -> str | None:
    """None when RAFT's ``core/corr.py`` is there, else why not."""
    corr = peer_dir() / "core" / "corr.py"
    return None if corr.is_file() else f"RAFT's core/corr.py not found at {corr} (set PYFLOWOPS_RAFT_PEER)"


@functools.cache
def corr_module() -> ModuleType:
    """RAFT's ``core/corr.py`` (``CorrBlock``, ``AlternateCorrBlock``), imported as ``raft_peer_corr``."""
    reason = available()
    if reason:
        raise FileNotFoundError(reason)
    core = str(peer_dir() / "core")
    saved_path, saved_utils = list(sys.path), {k: v for k, v in sys.modules.items() if k.split(".")[0] == "utils"}
    for name in saved_utils:  # RAFT's `utils` package, not some other installed `utils`
        del sys.modules[name]
    sys.path.insert(0, core)
    try:
        spec = importlib.util.spec_from_file_location("raft_peer_corr", Path(core) / "corr.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved_path
        for name in [k for k in sys.modules if k.split(".")[0] == "utils"]:
            del sys.modules[name]
        sys.modules.update(saved_utils)
    return module


@functools.cache
def alt_cuda_corr() -> ModuleType:
    """RAFT's ``alt_cuda_corr`` CUDA extension, compiled here, also set on :func:`corr_module`."""
    from torch.utils.cpp_extension import load

    src = peer_dir() / "alt_cuda_corr"
    module = load(name="alt_cuda_corr", sources=[str(src / "correlation.cpp"), str(src / "correlation_kernel.cu")],
                  extra_cuda_cflags=["-O3"], verbose=False)
    corr_module().alt_cuda_corr = module  # what RAFT's `import alt_cuda_corr` would have bound
    return module
