"""The Gaussians dataclass: validation, .to, indexing, concatenation and the 3DGS .ply round trip and errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plyfile import PlyData, PlyElement

from pyflowops.gaussians import SH_C0, Gaussians

FIELDS = ("means", "quats", "scales", "opacities", "colors")


def random_gaussians(n: int = 37, dtype=torch.float32) -> Gaussians:
    opacities = torch.rand(n, dtype=dtype)
    opacities[:2] = torch.tensor([0.0, 1.0], dtype=dtype)  # the logit's infinite ends must round-trip too
    return Gaussians(
        means=torch.randn(n, 3, dtype=dtype) * 3,
        quats=torch.randn(n, 4, dtype=dtype),  # not normalized: stored as given
        scales=torch.exp(torch.randn(n, 3, dtype=dtype) * 2),
        opacities=opacities,
        colors=torch.rand(n, 3, dtype=dtype),
    )


def assert_same(a: Gaussians, b: Gaussians, **tol) -> None:
    for name in FIELDS:
        torch.testing.assert_close(getattr(a, name), getattr(b, name), **tol)


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("means", torch.zeros(5, 2), r"means must have shape \[N, 3\]"),
        ("quats", torch.zeros(4, 4), r"quats must have shape \[N, 4\] with N = 5 from means"),
        ("scales", torch.zeros(5, 3, 1), "scales must have 2 dimensions"),
        ("opacities", torch.zeros(5, 1), "opacities must have 1 dimensions"),
        ("colors", torch.zeros(5, 3, dtype=torch.int64), "colors must be float32"),
        ("colors", torch.zeros(5, 3, dtype=torch.float64), "colors has dtype torch.float64 but means has"),
        ("means", [[0.0] * 3] * 5, "means must be a torch.Tensor"),
    ],
)
def test_validation(field, value, message):
    kwargs = {name: getattr(random_gaussians(5), name) for name in FIELDS}
    kwargs[field] = value
    with pytest.raises((ValueError, TypeError), match=message):
        Gaussians(**kwargs)


def test_to_len_index_cat():
    g = random_gaussians(10)
    assert len(g) == 10 and g.dtype == torch.float32 and g.device.type == "cpu"
    d = g.to(torch.float64)
    assert d.dtype == torch.float64 and all(getattr(d, f).dtype == torch.float64 for f in FIELDS)
    assert_same(d.to("cpu", torch.float32), g, rtol=0, atol=0)

    one = g[-1]  # an int keeps the row dimension
    assert len(one) == 1 and torch.equal(one.means, g.means[9:10]) and torch.equal(one.opacities, g.opacities[9:])
    assert torch.equal(g[2:5].quats, g.quats[2:5])
    mask = g.opacities > 0.5
    assert torch.equal(g[mask].colors, g.colors[mask]) and len(g[mask]) == int(mask.sum())
    picked = g[torch.tensor([3, 0, 3])]
    assert torch.equal(picked.scales, g.scales[[3, 0, 3]])
    assert torch.equal(g[[1, 2]].means, g.means[1:3])
    with pytest.raises(IndexError, match="out of range for 10"):
        g[10]
    with pytest.raises(IndexError, match="1-D"):
        g[torch.tensor(1)]
    with pytest.raises(TypeError, match="indexed by"):
        g["means"]

    both = Gaussians.cat([g[:4], g[4:]])
    assert_same(both, g, rtol=0, atol=0)
    with pytest.raises(ValueError, match="non-empty"):
        Gaussians.cat([])


@pytest.mark.parametrize("sh_degree", [0, 3])
def test_ply_round_trip(tmp_path, sh_degree):
    g = random_gaussians()
    path = tmp_path / "scene.ply"
    g.save_ply(path, sh_degree=sh_degree)
    back = Gaussians.load_ply(path)
    assert back.dtype == torch.float32 and len(back) == len(g)
    assert_same(back, g, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(back.opacities[:2], torch.tensor([0.0, 1.0]), rtol=0, atol=0)


def test_ply_layout_is_3dgs(tmp_path):
    """The stored values: logit opacity, log scales, f_dc = (c - 0.5) / C0, rot = quats as given, normals 0."""
    g = random_gaussians(6)
    g.opacities[:2] = 0.25
    path = tmp_path / "scene.ply"
    g.save_ply(path, sh_degree=1)
    ply = PlyData.read(str(path))
    vertex = ply["vertex"].data
    names = list(vertex.dtype.names)
    assert names[:9] == ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
    assert names[9:18] == [f"f_rest_{i}" for i in range(9)]
    assert names[18:] == ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    assert all(vertex.dtype[n] == np.dtype("<f4") for n in names) and not ply.text
    col = lambda *ns: torch.from_numpy(np.stack([vertex[n] for n in ns], -1).astype(np.float64))  # noqa: E731
    torch.testing.assert_close(col("opacity")[:2, 0], torch.full((2,), np.log(1 / 3), dtype=torch.float64))
    torch.testing.assert_close(col("scale_0", "scale_1", "scale_2"), g.scales.double().log(), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(col("f_dc_0", "f_dc_1", "f_dc_2"), (g.colors.double() - 0.5) / SH_C0)
    torch.testing.assert_close(col("rot_0", "rot_1", "rot_2", "rot_3"), g.quats.double())
    assert (col("nx", "ny", "nz") == 0).all() and (col(*[f"f_rest_{i}" for i in range(9)]) == 0).all()


def test_ply_ignores_extras_and_reads_ascii(tmp_path):
    """A 3DGS file with f_rest, normals, an extra element, in ASCII, loads its own columns only."""
    g = random_gaussians(5)
    stored = {
        "x": g.means[:, 0], "y": g.means[:, 1], "z": g.means[:, 2], "nx": torch.ones(5),
        "f_dc_0": (g.colors[:, 0] - 0.5) / SH_C0, "f_dc_1": (g.colors[:, 1] - 0.5) / SH_C0,
        "f_dc_2": (g.colors[:, 2] - 0.5) / SH_C0, "f_rest_0": torch.ones(5), "opacity": torch.logit(g.opacities),
        "scale_0": g.scales[:, 0].log(), "scale_1": g.scales[:, 1].log(), "scale_2": g.scales[:, 2].log(),
        "rot_0": g.quats[:, 0], "rot_1": g.quats[:, 1], "rot_2": g.quats[:, 2], "rot_3": g.quats[:, 3],
        "extra": torch.arange(5.0),
    }  # fmt: skip
    data = np.empty(5, dtype=[(n, "f8") for n in stored])
    for n, v in stored.items():
        data[n] = v.double().numpy()
    other = np.zeros(2, dtype=[("a", "i4")])
    path = tmp_path / "ascii.ply"
    PlyData([PlyElement.describe(other, "camera"), PlyElement.describe(data, "vertex")], text=True).write(str(path))
    assert_same(Gaussians.load_ply(path), g, rtol=1e-5, atol=1e-5)


def test_ply_errors(tmp_path):
    g = random_gaussians(20)
    good = tmp_path / "good.ply"
    g.save_ply(good)
    raw = good.read_bytes()

    truncated = tmp_path / "truncated.ply"
    truncated.write_bytes(raw[:-7])  # the data ends inside the last vertex
    with pytest.raises(ValueError, match=r"truncated\.ply.*not a valid \.ply.*end-of-file"):
        Gaussians.load_ply(truncated)
    header_cut = tmp_path / "header_cut.ply"
    header_cut.write_bytes(raw[:120])
    with pytest.raises(ValueError, match="header_cut.ply"):
        Gaussians.load_ply(header_cut)
    junk = tmp_path / "junk.ply"
    junk.write_bytes(b"\x00\x01 not a ply file" * 8)
    with pytest.raises(ValueError, match="junk.ply"):
        Gaussians.load_ply(junk)
    with pytest.raises(FileNotFoundError, match="missing.ply"):
        Gaussians.load_ply(tmp_path / "missing.ply")

    data = PlyData.read(str(good))["vertex"].data
    keep = [n for n in data.dtype.names if n not in ("scale_1", "rot_3")]
    partial = np.empty(len(data), dtype=[(n, "f4") for n in keep])
    for n in keep:
        partial[n] = data[n]
    missing = tmp_path / "missing_props.ply"
    PlyData([PlyElement.describe(partial, "vertex")]).write(str(missing))
    with pytest.raises(ValueError, match=r"lacks the 3DGS vertex properties \['scale_1', 'rot_3'\]"):
        Gaussians.load_ply(missing)

    no_vertex = tmp_path / "no_vertex.ply"
    PlyData([PlyElement.describe(partial, "face")]).write(str(no_vertex))
    with pytest.raises(ValueError, match="no 'vertex' element.*'face'"):
        Gaussians.load_ply(no_vertex)


def test_save_rejects_values_without_log_or_logit(tmp_path):
    g = random_gaussians(4)
    bad = Gaussians(g.means, g.quats, -g.scales, g.opacities, g.colors)
    with pytest.raises(ValueError, match="scales must all be > 0"):
        bad.save_ply(tmp_path / "a.ply")
    bad = Gaussians(g.means, g.quats, g.scales, g.opacities + 1.5, g.colors)
    with pytest.raises(ValueError, match=r"opacities must lie in \[0, 1\]"):
        bad.save_ply(tmp_path / "a.ply")
    with pytest.raises(ValueError, match="sh_degree"):
        g.save_ply(tmp_path / "a.ply", sh_degree=4)
