"""Ahead-of-time compile of the Triton kernels to cubin, without a GPU.

The interpreter (conftest) accepts code that the GPU compiler rejects, and never
shows register pressure. Triton ships ptxas, so ``triton.compile`` with an explicit
``GPUTarget`` builds real sm_80 / sm_90 cubin here. Under TRITON_INTERPRET=1
``triton.jit`` returns interpreter objects that cannot be compiled, so the compiles
run in worker subprocesses (this file run as a script) with the flag unset, a fresh
Triton cache (every compile really runs ptxas) and the ptxas ``-v`` log captured.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

CORR_MODULE = "pyflowops.triton.corr"
FEATURE_DIM = 256  # D of the on-the-fly kernels (RAFT's feature width): sets their tile sizes
WINDOW_KERNELS = ("_corr_window_fwd_kernel", "_corr_window_grad_coords_kernel", "_corr_window_coef_kernel")
PATCH_KERNELS = ("_corr_patch_kernel", "_corr_onthefly_grad_kernel")
# The whole arch x dtype x radius product takes about 60 s of CPU; by default the other dtypes
# (every kernel's code depends on the dtype) are compiled for sm_90 only. PYFLOWOPS_AOT_FULL=1: all of it.
FULL_MATRIX = os.environ.get("PYFLOWOPS_AOT_FULL") == "1"


def _variants() -> list[tuple[str, bool | None]]:
    """(kernel, PATCH) of every compiled variant; PATCH is None for kernels without that switch."""
    return [(k, patch) for k in WINDOW_KERNELS for patch in (False, True)] + [(k, None) for k in PATCH_KERNELS]


def _variant_name(kernel: str, patch: bool | None) -> str:
    return kernel if patch is None else f"{kernel}[patch={int(patch)}]"


def _cases() -> list[dict]:
    """float32: sm_80 and sm_90 at r = 0 and 4; float16/bfloat16/float64: sm_90 at r = 4, and r = 0
    for the on-the-fly kernels (whose r = 0 tile differs); float32 sm_90 at r = 8 once."""
    grid = [(arch, "float32", r) for arch in (80, 90) for r in (0, 4)]
    for dtype in ("float16", "bfloat16", "float64"):
        grid += [(arch, dtype, r) for arch in ((80, 90) if FULL_MATRIX else (90,)) for r in (0, 4)]
    grid.append((90, "float32", 8))
    cases = [
        {"arch": arch, "dtype": dtype, "radius": radius, "kernel": k, "patch": p}
        for arch, dtype, radius in grid
        for k, p in _variants()
        if FULL_MATRIX or radius != 0 or dtype == "float32" or p is None
    ]
    for c in cases:
        c["id"] = f"sm{c['arch']}-{c['dtype']}-r{c['radius']}-{_variant_name(c['kernel'], c['patch'])}"
    return cases


CASES = _cases()


# --------------------------------------------------------------------------- worker (runs without the interpreter)

_PTX_TYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}


def _pointer_types(case: dict) -> dict[str, str]:
    """Element type of every pointer argument, as the launchers in corr.py pass them."""
    t = _PTX_TYPES[case["dtype"]]
    acc = "fp64" if case["dtype"] == "float64" else "fp32"
    src = acc if case["patch"] else t  # window kernels: PATCH reads/writes the acc-dtype patch
    return {
        "src_ptr": src,
        "gsrc_ptr": src,
        "coords_ptr": t,
        "out_ptr": t,
        "gout_ptr": t,
        "gcoords_ptr": acc,
        "f1_ptr": t,
        "f2_ptr": t,
        "patch_ptr": acc,
        "coef_ptr": acc,
        "gf1_ptr": acc,
        "gf2_ptr": acc,
    }


def _ptxas_stats(log: str) -> dict:
    """Registers, stack and spill bytes from ``ptxas -v`` (summed over its functions); None where absent."""
    regs = [int(x) for x in re.findall(r"Used (\d+) registers", log)]
    frame = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", log)
    return {
        "regs": max(regs) if regs else None,
        "stack": sum(int(f[0]) for f in frame) if frame else None,
        "spill_stores": sum(int(f[1]) for f in frame) if frame else None,
        "spill_loads": sum(int(f[2]) for f in frame) if frame else None,
    }


def _compile(module, case: dict) -> dict:
    """triton.compile one case to cubin; the outcome and the ptxas statistics."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    fn = getattr(module, case["kernel"])
    fp64 = case["dtype"] == "float64"
    if case["patch"] is None:
        blocks = module._patch_blocks(case["radius"], FEATURE_DIM)
        warps = blocks.pop("num_warps")
        consts = {"RADIUS": case["radius"], "FP64": fp64, **blocks}
    else:
        warps = module._WINDOW_WARPS
        consts = {"RADIUS": case["radius"], "PATCH": case["patch"], "FP64": fp64, "BLOCK_Q": module._BLOCK_Q}
    ptrs = _pointer_types(case)
    # As a launch specialises its arguments: Python ints -> i32, floats -> fp32, and a 16-divisibility
    # hint on pointers (torch allocations are aligned) and on D (FEATURE_DIM). The other ints (sizes,
    # offsets) get no hint: the generic variant, which any image size can hit.
    scalar = {"inv_scale": "fp32"}
    signature = {
        name: "constexpr" if name in consts else "*" + ptrs[name] if name in ptrs else scalar.get(name, "i32")
        for name in fn.arg_names
    }
    hinted = set(ptrs) | ({"D"} if FEATURE_DIM % 16 == 0 else set())
    attrs = {(i,): [["tt.divisibility", 16]] for i, name in enumerate(fn.arg_names) if name in hinted}
    log = io.StringIO()
    start = time.perf_counter()
    try:
        with contextlib.redirect_stdout(log):  # TRITON_DUMP_PTXAS_LOG prints the -v log here
            compiled = triton.compile(
                ASTSource(fn, signature, consts, attrs),
                target=GPUTarget("cuda", case["arch"], 32),
                options={"num_warps": warps},
            )
    except Exception as exc:  # noqa: BLE001 - reported to the test, which fails with it
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"[:4000]}
    stats = _ptxas_stats(log.getvalue())
    seconds = round(time.perf_counter() - start, 2)
    return {"ok": True, "seconds": seconds, "cubin_bytes": len(compiled.asm.get("cubin", b"")), **stats}


def _worker(jobs_path: str, out_path: str) -> None:
    import importlib

    assert os.environ.get("TRITON_INTERPRET", "0") in ("", "0"), "worker must run with the interpreter off"
    module = importlib.import_module(CORR_MODULE)
    jobs = json.loads(Path(jobs_path).read_text())
    results = {case["id"]: _compile(module, case) for case in jobs}
    Path(out_path).write_text(json.dumps(results))


# --------------------------------------------------------------------------- tests


def _ptxas_or_skip() -> str:
    try:
        import triton

        return triton.knobs.nvidia.ptxas.path
    except (ImportError, AttributeError, RuntimeError) as exc:
        pytest.skip(f"triton's bundled ptxas is not available ({exc}): cannot compile to cubin")


@pytest.fixture(scope="module")
def compiled(request, tmp_path_factory) -> dict[str, dict]:
    """The selected cases (all, unless -k narrows them) compiled once, sharded over worker subprocesses."""
    _ptxas_or_skip()
    import pyflowops

    selected = {
        item.callspec.params["case"]["id"]
        for item in request.session.items
        if item.module is request.module and "case" in getattr(getattr(item, "callspec", None), "params", {})
    }
    tmp = tmp_path_factory.mktemp("triton_aot")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = str(Path(pyflowops.__file__).resolve().parent.parent)  # the pyflowops this session tests
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    env["TRITON_CACHE_DIR"] = str(tmp / "cache")  # fresh: a cache hit would skip ptxas and its log
    env["TRITON_DUMP_PTXAS_LOG"] = "1"
    # big compiles first, dealt round-robin
    ordered = sorted((c for c in CASES if c["id"] in selected), key=lambda c: -c["radius"])
    n_workers = max(1, min(4, len(os.sched_getaffinity(0)), len(ordered)))
    procs = []
    for w in range(n_workers):
        jobs, out = tmp / f"jobs{w}.json", tmp / f"out{w}.json"
        jobs.write_text(json.dumps(ordered[w::n_workers]))
        cmd = [sys.executable, __file__, str(jobs), str(out)]
        procs.append((subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True), out))
    results = {}
    try:
        for proc, out in procs:
            log, _ = proc.communicate(timeout=900)
            assert proc.returncode == 0, f"compile worker died (rc {proc.returncode}):\n{log[-4000:]}"
            results.update(json.loads(out.read_text()))
    finally:
        for proc, _ in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return results


def test_every_kernel_is_covered():
    """The matrix's kernels are exactly corr.py's @triton.jit functions that no other one calls."""
    import importlib.util

    tree = ast.parse(Path(importlib.util.find_spec(CORR_MODULE).origin).read_text())
    functions = [f for f in tree.body if isinstance(f, ast.FunctionDef)]
    jitted = [f for f in functions if any("jit" in ast.unparse(d) for d in f.decorator_list)]
    calls = [n for f in jitted for n in ast.walk(f) if isinstance(n, ast.Call)]
    called = {n.func.id for n in calls if isinstance(n.func, ast.Name)}
    kernels = {f.name for f in jitted if f.name not in called}
    assert kernels == set(WINDOW_KERNELS + PATCH_KERNELS), "add new kernels to this file's matrix"


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_compiles_to_cubin(compiled, case):
    """The kernel compiles for the GPU (Triton front end, LLVM, ptxas) and yields cubin."""
    result = compiled[case["id"]]
    assert result["ok"], result["error"]
    assert result["cubin_bytes"] > 0


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_no_register_spills(compiled, case):
    """ptxas spills no registers to local memory (ptxas -v: 0 bytes spill stores and loads)."""
    result = compiled[case["id"]]
    if not result["ok"]:
        pytest.fail("did not compile (see test_compiles_to_cubin)")
    assert result["regs"] is not None and result["spill_stores"] is not None, "no ptxas -v log was captured"
    spills = (result["spill_stores"], result["spill_loads"])
    assert spills == (0, 0), f"spill stores/loads {spills} bytes at {result['regs']} registers"


if __name__ == "__main__":
    _worker(*sys.argv[1:])
