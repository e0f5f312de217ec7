"""A set of 3D Gaussians (means, rotations, scales, opacities, colors) and its .ply I/O.

The .ply layout is the one 3D Gaussian Splatting (Kerbl et al., 2023) writes and its
viewers read: one ``vertex`` element with float32 properties ``x, y, z, nx, ny, nz,
f_dc_0..2, [f_rest_*], opacity, scale_0..2, rot_0..3``, where ``f_dc = (color - 0.5) / C0``
(the degree-0 spherical-harmonic coefficient), ``opacity`` is a logit and ``scale_*`` are
logarithms; ``rot_0..3`` is the quaternion (w, x, y, z) as given (not normalized).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np
import torch

from pyflowops.ops._checks import check_int, check_same_device_dtype, check_shape, check_tensor

__all__ = ["SH_C0", "Gaussians"]

SH_C0 = 0.28209479177387814  # the degree-0 real spherical harmonic, 1 / (2 sqrt(pi))
_COLUMNS = {"means": 3, "quats": 4, "scales": 3, "opacities": None, "colors": 3}
# .ply property names of each field, in the order 3DGS writes them (normals and f_rest are extra)
_PLY_NAMES = {
    "means": ("x", "y", "z"),
    "colors": ("f_dc_0", "f_dc_1", "f_dc_2"),
    "opacities": ("opacity",),
    "scales": ("scale_0", "scale_1", "scale_2"),
    "quats": ("rot_0", "rot_1", "rot_2", "rot_3"),
}


@dataclass(eq=False)  # tensors: an element-wise __eq__ would not give a bool
class Gaussians:
    """N 3D Gaussians, the inputs of :func:`pyflowops.render` and :func:`pyflowops.render_flow`.

    Attributes:
        means: [N, 3] world positions.
        quats: [N, 4] rotations (w, x, y, z), any norm.
        scales: [N, 3] standard deviations along the rotated axes (positive, linear).
        opacities: [N] in [0, 1].
        colors: [N, 3] RGB in [0, 1].

    All five share one floating dtype and one device (checked on construction).

    Example:
        >>> import torch
        >>> from pyflowops.gaussians import Gaussians
        >>> g = Gaussians(torch.zeros(4, 3), torch.tensor([[1.0, 0, 0, 0]]).repeat(4, 1), torch.ones(4, 3) * 0.1,
        ...               torch.full((4,), 0.5), torch.rand(4, 3))
        >>> len(g), len(g[1:]), len(g[torch.tensor([True, False, True, False])]), len(Gaussians.cat([g, g]))
        (4, 3, 2, 8)
    """

    means: torch.Tensor
    quats: torch.Tensor
    scales: torch.Tensor
    opacities: torch.Tensor
    colors: torch.Tensor

    def __post_init__(self) -> None:
        check_tensor("means", self.means, 2)
        n = self.means.shape[0]
        for name, cols in _COLUMNS.items():
            value = getattr(self, name)
            check_tensor(name, value, 1 if cols is None else 2)
            expected, layout = ((n,), "[N]") if cols is None else ((n, cols), f"[N, {cols}]")
            check_shape(name, value, expected, f"{layout} with N = {n} from means")
        check_same_device_dtype([(name, getattr(self, name)) for name in _COLUMNS])

    def _map(self, fn) -> Gaussians:
        return Gaussians(**{f.name: fn(getattr(self, f.name)) for f in fields(self)})

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    @property
    def dtype(self) -> torch.dtype:
        return self.means.dtype

    def to(self, *args, **kwargs) -> Gaussians:
        """Every tensor ``.to(*args, **kwargs)`` (a device, a dtype, or both), as a new Gaussians."""
        return self._map(lambda t: t.to(*args, **kwargs))

    def __getitem__(self, index) -> Gaussians:
        """Select Gaussians: an int (keeps a length-1 set), a slice, a bool mask [N] or an index tensor/list."""
        if isinstance(index, bool):
            raise TypeError("a bool is not an index of Gaussians (use a bool mask tensor [N])")
        if isinstance(index, int):
            n = len(self)
            if not -n <= index < n:
                raise IndexError(f"index {index} is out of range for {n} Gaussians")
            index = slice(index % n, index % n + 1)
        elif isinstance(index, torch.Tensor) and index.dim() != 1:
            raise IndexError(f"a tensor index of Gaussians must be 1-D (bool [N] or integer), got {tuple(index.shape)}")
        elif not isinstance(index, (slice, torch.Tensor, Sequence)) or isinstance(index, (str, tuple)):
            kind = type(index).__name__
            raise TypeError(f"Gaussians are indexed by int, slice, bool mask or index tensor, got {kind}")
        return self._map(lambda t: t[index])

    @classmethod
    def cat(cls, items: Sequence[Gaussians]) -> Gaussians:
        """Concatenate Gaussians (same dtype and device) in order."""
        items = list(items)
        if not items or not all(isinstance(g, Gaussians) for g in items):
            raise ValueError("Gaussians.cat needs a non-empty sequence of Gaussians")
        return cls(**{f.name: torch.cat([getattr(g, f.name) for g in items]) for f in fields(cls)})

    # ------------------------------------------------------------------ .ply

    def save_ply(self, path: str | os.PathLike, sh_degree: int = 0) -> None:
        """Write a binary little-endian .ply in the 3DGS layout (float32; see the module docstring).

        Args:
            path: the file to write (overwritten).
            sh_degree: 0 writes no ``f_rest_*``; d in 1..3 writes the ``3 ((d + 1)^2 - 1)`` zero
                ``f_rest_*`` properties that viewers expecting degree d need.

        Raises:
            ValueError: scales not all > 0 or opacities outside [0, 1] (no finite log / logit).
        """
        from plyfile import PlyData, PlyElement

        check_int("sh_degree", sh_degree, 0, 3)
        values = {f: getattr(self, f).detach().to(device="cpu", dtype=torch.float64) for f in _COLUMNS}
        if not bool((values["scales"] > 0).all()):
            raise ValueError("scales must all be > 0 to be saved as log scales")
        if not bool(((values["opacities"] >= 0) & (values["opacities"] <= 1)).all()):
            raise ValueError("opacities must lie in [0, 1] to be saved as logits")
        stored = {
            "means": values["means"],
            "colors": (values["colors"] - 0.5) / SH_C0,
            "opacities": torch.logit(values["opacities"]).unsqueeze(-1),  # 0 and 1 give -inf / inf: exact round trip
            "scales": torch.log(values["scales"]),
            "quats": values["quats"],
        }
        columns = {name: stored["means"][:, i] for i, name in enumerate(_PLY_NAMES["means"])}
        zeros = torch.zeros(len(self), dtype=torch.float64)
        columns.update({name: zeros for name in ("nx", "ny", "nz")})
        columns.update({name: stored["colors"][:, i] for i, name in enumerate(_PLY_NAMES["colors"])})
        columns.update({f"f_rest_{i}": zeros for i in range(3 * ((sh_degree + 1) ** 2 - 1))})
        for field in ("opacities", "scales", "quats"):
            columns.update({name: stored[field][:, i] for i, name in enumerate(_PLY_NAMES[field])})
        data = np.empty(len(self), dtype=[(name, "f4") for name in columns])
        for name, column in columns.items():
            data[name] = column.numpy()
        PlyData([PlyElement.describe(data, "vertex")], text=False, byte_order="<").write(os.fspath(path))

    @classmethod
    def load_ply(cls, path: str | os.PathLike) -> Gaussians:
        """Read a 3DGS .ply (binary or ASCII): float32 CPU Gaussians.

        ``f_rest_*``, normals and any other extra properties or elements are ignored; colors
        come from ``f_dc`` unclamped, opacities through a sigmoid, scales through exp.

        Raises:
            FileNotFoundError: no such file.
            ValueError: not a readable .ply (malformed header, truncated or corrupt data), no
                ``vertex`` element, or missing properties (all named), with the path.
        """
        from plyfile import PlyData, PlyParseError

        path = os.fspath(path)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"no .ply file at {path!r}")
        try:
            ply = PlyData.read(path)
            vertex = ply["vertex"] if "vertex" in ply else None
            data = None if vertex is None else vertex.data
        except (PlyParseError, ValueError, EOFError, IndexError, KeyError, TypeError) as exc:  # what bad bytes raise
            reason = f"{type(exc).__name__}: {exc}"
            raise ValueError(f"cannot read Gaussians from {path!r}: not a valid .ply ({reason})") from exc
        if vertex is None:
            names = [e.name for e in ply.elements]
            raise ValueError(f"{path!r} has no 'vertex' element (elements: {names}): not a 3DGS .ply")
        present = set(data.dtype.names or ())
        missing = [name for names in _PLY_NAMES.values() for name in names if name not in present]
        if missing:
            raise ValueError(f"{path!r} lacks the 3DGS vertex properties {missing}")

        def column(field: str) -> torch.Tensor:
            stacked = np.stack([np.asarray(data[name], dtype=np.float64) for name in _PLY_NAMES[field]], -1)
            return torch.from_numpy(stacked)

        return cls(
            means=column("means").float(),
            quats=column("quats").float(),
            scales=torch.exp(column("scales")).float(),
            opacities=torch.sigmoid(column("opacities")[:, 0]).float(),
            colors=(column("colors") * SH_C0 + 0.5).float(),
        )
