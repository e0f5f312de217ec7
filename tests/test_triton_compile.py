"""Ahead-of-time compile of the Triton kernels (every module in MODULES) to cubin, without a GPU.

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

FULL_MATRIX = os.environ.get("PYFLOWOPS_AOT_FULL") == "1"
_PTX_TYPES = {"float16": "fp16", "bfloat16": "bf16", "float32": "fp32", "float64": "fp64"}


def _acc(dtype: str) -> str:
    return "fp64" if dtype == "float64" else "fp32"


# --------------------------------------------------------------------------- the matrix
# One entry per Triton module (MODULES, at the end of this section): ``cases()`` lists the
# compiled variants as JSON-able dicts (module, kernel, arch, dtype, the module's own keys,
# id, cost: the slow compiles are dealt out first), and ``launch(module, case)`` says what a
# launch from that module's launchers passes: the constexprs, num_warps, the element type of
# every pointer argument, the type of the other scalars (default i32) and the arguments that
# get a 16-divisibility hint. Every kernel's code depends on the dtype; by default the
# non-float32 dtypes compile for sm_90 only. PYFLOWOPS_AOT_FULL=1: all of the product.


def _dtype_grid() -> list[tuple[int, str]]:
    """(arch, dtype): float32 on sm_80 and sm_90, the other dtypes on sm_90 (FULL_MATRIX: both)."""
    grid = [(arch, "float32") for arch in (80, 90)]
    for dtype in ("float16", "bfloat16", "float64"):
        grid += [(arch, dtype) for arch in ((80, 90) if FULL_MATRIX else (90,))]
    return grid


# ---- corr: window kernels x PATCH, on-the-fly kernels; by the window radius
CORR_FEATURE_DIM = 256  # D of the on-the-fly kernels (RAFT's feature width): sets their tile sizes
CORR_WINDOW_KERNELS = ("_corr_window_fwd_kernel", "_corr_window_grad_coords_kernel", "_corr_window_coef_kernel")
CORR_PATCH_KERNELS = ("_corr_patch_kernel", "_corr_onthefly_grad_kernel")


def _corr_cases() -> list[dict]:
    """float32: sm_80 and sm_90 at r = 0 and 4; float16/bfloat16/float64: sm_90 at r = 4, and r = 0
    for the on-the-fly kernels (whose r = 0 tile differs); float32 sm_90 at r = 8 once. About 60 s of CPU."""
    variants = [(k, patch) for k in CORR_WINDOW_KERNELS for patch in (False, True)]
    variants += [(k, None) for k in CORR_PATCH_KERNELS]  # PATCH is None: no such switch
    grid = [(arch, dtype, r) for arch, dtype in _dtype_grid() for r in (0, 4)] + [(90, "float32", 8)]
    cases = []
    for arch, dtype, radius in grid:
        for kernel, patch in variants:
            if FULL_MATRIX or radius != 0 or dtype == "float32" or patch is None:
                name = kernel if patch is None else f"{kernel}[patch={int(patch)}]"
                cases.append({
                    "module": "pyflowops.triton.corr", "kernel": kernel, "arch": arch, "dtype": dtype,
                    "radius": radius, "patch": patch, "id": f"sm{arch}-{dtype}-r{radius}-{name}", "cost": radius,
                })  # fmt: skip
    return cases


def _corr_launch(module, case: dict) -> tuple[dict, int, dict[str, str], dict[str, str], set[str]]:
    """As corr.py's launchers: the window kernels run PATCH on the acc-dtype patch."""
    fp64 = case["dtype"] == "float64"
    if case["patch"] is None:
        blocks = module._patch_blocks(case["radius"], CORR_FEATURE_DIM)
        warps = blocks.pop("num_warps")
        consts = {"RADIUS": case["radius"], "FP64": fp64, **blocks}
    else:
        warps = module._WINDOW_WARPS
        consts = {"RADIUS": case["radius"], "PATCH": case["patch"], "FP64": fp64, "BLOCK_Q": module._BLOCK_Q}
    t, acc = _PTX_TYPES[case["dtype"]], _acc(case["dtype"])
    src = acc if case["patch"] else t
    ptrs = {"src_ptr": src, "gsrc_ptr": src, "coords_ptr": t, "out_ptr": t, "gout_ptr": t, "gcoords_ptr": acc}
    ptrs |= {"f1_ptr": t, "f2_ptr": t, "patch_ptr": acc, "coef_ptr": acc, "gf1_ptr": acc, "gf2_ptr": acc}
    hinted = set(ptrs) | ({"D"} if CORR_FEATURE_DIM % 16 == 0 else set())
    return consts, warps, ptrs, {"inv_scale": "fp32"}, hinted


# ---- gradreg: per kernel, named constexpr variants; the first one compiles for every dtype
_SOBEL, _DIFF2 = {"OP": 0, "ORDER": 1}, {"OP": 1, "ORDER": 2}
GRADREG_VARIANTS = {
    "_spatial_gradient_kernel": {"sobel": {**_SOBEL, "NORMALIZED": True}, "diff2": {**_DIFF2, "NORMALIZED": False}},
    "_spatial_gradient_backward_kernel": {
        "diff2": {**_DIFF2, "NORMALIZED": True},
        "sobel": {**_SOBEL, "NORMALIZED": False},
    },
    "_gradreg_forward_kernel": {  # everything on, tile sums; only the loss map
        "sobel-charb-all": {
            **_SOBEL, "PENALTY": 1, "HAS_TARGET": True, "HAS_MASK": True, "EDGE": True, "THRESH": True,
            "LOSS_MAP": False, "SAVE_W": True,
        },
        "diff2-l1-map": {
            **_DIFF2, "PENALTY": 0, "HAS_TARGET": False, "HAS_MASK": False, "EDGE": False, "THRESH": False,
            "LOSS_MAP": True, "SAVE_W": False,
        },
    },  # fmt: skip
    "_gradreg_backward_kernel": {  # K = 3 with everything on (the most registers); edge-aware smoothness
        "diff2-charb-all": {**_DIFF2, "PENALTY": 1, "HAS_TARGET": True, "HAS_W": True, "LOSS_MAP": True},
        "sobel-charb-w": {**_SOBEL, "PENALTY": 1, "HAS_TARGET": False, "HAS_W": True, "LOSS_MAP": False},
        "diff1-l2": {"OP": 1, "ORDER": 1, "PENALTY": 2, "HAS_TARGET": False, "HAS_W": False, "LOSS_MAP": False},
    },
    "_textureless_mask_kernel": {"sobel": {"OP": 0}},
}


def _gradreg_cases() -> list[dict]:
    """The first variant of every kernel on the whole dtype grid, the others in float32 (sm_80 and
    sm_90); H, W unhinted (any size). Once, the backward with H, W divisible by 16 (the
    specialisation of a 1024 x 1024 launch). About 20 s of CPU."""

    def case(kernel: str, arch: int, dtype: str, variant: str, hw16: bool = False) -> dict:
        name = f"{variant}-hw16" if hw16 else variant
        return {
            "module": "pyflowops.triton.gradreg", "kernel": kernel, "arch": arch, "dtype": dtype,
            "variant": variant, "hw16": hw16, "cost": 3 if kernel == "_gradreg_backward_kernel" else 1,
            "id": f"gradreg-sm{arch}-{dtype}-{kernel}[{name}]",
        }  # fmt: skip

    cases = [
        case(kernel, arch, dtype, variant)
        for arch, dtype in _dtype_grid()
        for kernel, variants in GRADREG_VARIANTS.items()
        for n, variant in enumerate(variants)
        if n == 0 or dtype == "float32" or FULL_MATRIX
    ]
    return cases + [case("_gradreg_backward_kernel", 90, "float32", "sobel-charb-w", hw16=True)]


def _gradreg_launch(module, case: dict) -> tuple[dict, int, dict[str, str], dict[str, str], set[str]]:
    """As gradreg.py's launchers: bool masks as uint8, weight and tile sums in the acc dtype."""
    import torch

    kernel = case["kernel"]
    consts = {**module._meta(getattr(torch, case["dtype"])), **GRADREG_VARIANTS[kernel][case["variant"]]}
    warps = consts.pop("num_warps")
    t, acc = _PTX_TYPES[case["dtype"]], _acc(case["dtype"])
    out = {"_textureless_mask_kernel": "u8", "_gradreg_forward_kernel": t if consts.get("LOSS_MAP") else acc}
    ptrs = {p: t for p in ("x_ptr", "gout_ptr", "gx_ptr", "flow_ptr", "target_ptr", "image_ptr", "gl_ptr", "gflow_ptr")}
    ptrs |= {"out_ptr": out.get(kernel, t), "mask_ptr": "u8", "weight_ptr": acc, "w_ptr": acc}
    floats = {f"{name}_{part}": "fp32" for name in ("eps", "edge", "thr") for part in ("hi", "lo")}
    hinted = set(ptrs) | ({"H", "W"} if case["hw16"] else set())
    return consts, warps, ptrs, floats, hinted


# ---- splat: projection kernels on the dtype grid; the rasterizers per (tile size, channels, background)
SPLAT_RASTER_VARIANTS = {"ts16-c16-bg": (16, 16, True), "ts8-c3": (8, 3, False)}  # (tile_size, C, HAS_BG)


def _splat_cases() -> list[dict]:
    """Every kernel on the dtype grid (the rasterizers at 16 x 16 tiles, 16 channels and a background);
    the rasterizers also at 8 x 8 tiles, C = 3, no background, in float32."""

    def case(kernel: str, arch: int, dtype: str, variant: str | None) -> dict:
        name = kernel if variant is None else f"{kernel}[{variant}]"
        return {
            "module": "pyflowops.triton.splat", "kernel": kernel, "arch": arch, "dtype": dtype,
            "variant": variant, "cost": 1 if variant is None else 2, "id": f"splat-sm{arch}-{dtype}-{name}",
        }  # fmt: skip

    cases = []
    for arch, dtype in _dtype_grid():
        cases += [case(k, arch, dtype, None) for k in ("_project_fwd_kernel", "_project_bwd_kernel")]
        for kernel in ("_rasterize_fwd_kernel", "_rasterize_bwd_kernel"):
            cases += [
                case(kernel, arch, dtype, variant)
                for n, variant in enumerate(SPLAT_RASTER_VARIANTS)
                if n == 0 or dtype == "float32" or FULL_MATRIX
            ]
    return cases


def _splat_launch(module, case: dict) -> tuple[dict, int, dict[str, str], dict[str, str], set[str]]:
    """As splat.py's launchers: radii and the binning int32, the backward's per-instance buffer in the acc dtype."""
    t, acc = _PTX_TYPES[case["dtype"]], _acc(case["dtype"])
    consts = {"FP64": case["dtype"] == "float64"}
    if case["variant"] is None:
        consts["BLOCK"], warps = module._BLOCK_N, module._PROJECT_WARPS
    else:
        tile_size, channels, has_bg = SPLAT_RASTER_VARIANTS[case["variant"]]
        meta = module._raster_meta(tile_size, channels, backward=case["kernel"] == "_rasterize_bwd_kernel")
        warps = meta.pop("num_warps")
        consts |= {**meta, "HAS_BG": has_bg}
    ints = ("radii_ptr", "offsets_ptr", "ids_ptr", "last_ptr")
    names = (
        "means_ptr quats_ptr scales_ptr viewmat_ptr k_ptr means2d_ptr conics_ptr depths_ptr gm2d_ptr gconics_ptr "
        "gdepths_ptr gmeans_ptr gquats_ptr gscales_ptr opac_ptr feat_ptr bg_ptr image_ptr alpha_ptr depth_ptr "
        "gimg_ptr galpha_ptr gdepth_ptr"
    ).split()
    ptrs = {name: t for name in names} | {name: "i32" for name in ints} | {"buf_ptr": acc}
    floats = {f"{name}_{part}": "fp32" for name in ("near", "far") for part in ("hi", "lo")}
    return consts, warps, ptrs, floats, set(ptrs)


MODULES = {  # import path -> (cases, launch)
    "pyflowops.triton.corr": (_corr_cases, _corr_launch),
    "pyflowops.triton.gradreg": (_gradreg_cases, _gradreg_launch),
    "pyflowops.triton.splat": (_splat_cases, _splat_launch),
}
CASES = [case for cases, _ in MODULES.values() for case in cases()]


# --------------------------------------------------------------------------- worker (runs without the interpreter)


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
    consts, warps, ptrs, scalars, hinted = MODULES[case["module"]][1](module, case)
    # As a launch specialises its arguments: Python ints -> i32, floats -> fp32, and a 16-divisibility
    # hint on pointers (torch allocations are aligned) and on the hinted ints. The other ints (sizes,
    # offsets) get no hint: the generic variant, which any image size can hit.
    signature = {
        name: "constexpr" if name in consts else "*" + ptrs[name] if name in ptrs else scalars.get(name, "i32")
        for name in fn.arg_names
    }
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
    jobs = json.loads(Path(jobs_path).read_text())
    results = {case["id"]: _compile(importlib.import_module(case["module"]), case) for case in jobs}
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
    ordered = sorted((c for c in CASES if c["id"] in selected), key=lambda c: -c["cost"])
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


@pytest.mark.parametrize("module", list(MODULES))
def test_every_kernel_is_covered(module):
    """The matrix's kernels of a module are exactly its @triton.jit functions that no other one calls."""
    import importlib.util

    tree = ast.parse(Path(importlib.util.find_spec(module).origin).read_text())
    functions = [f for f in tree.body if isinstance(f, ast.FunctionDef)]
    jitted = [f for f in functions if any("jit" in ast.unparse(d) for d in f.decorator_list)]
    calls = [n for f in jitted for n in ast.walk(f) if isinstance(n, ast.Call)]
    called = {n.func.id for n in calls if isinstance(n.func, ast.Name)}
    kernels = {f.name for f in jitted if f.name not in called}
    assert kernels == {c["kernel"] for c in CASES if c["module"] == module}, "add new kernels to this file's matrix"


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
