"""Flow visualisation: the Middlebury colour wheel, end-point-error images, titled panels.

Flows here are ``[H, W, 2]`` (u = column (x) displacement first, pixels), numpy arrays or torch
tensors; ``[2, H, W]`` is accepted too (``[H, W, 2]`` wins when both fit). Images come back as
``numpy.uint8`` RGB ``[H, W, 3]``.

Example:
    >>> import numpy as np
    >>> flow_to_color(np.zeros((4, 6, 2), np.float32)).shape
    (4, 6, 3)
"""

from __future__ import annotations

import io as _stdio
import math
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from pyflowops.flow.io import _to_numpy, as_hw2, atomic_write_bytes

__all__ = ["make_colorwheel", "flow_to_color", "error_map", "make_panel", "write_panel"]

# Segment lengths of the Middlebury wheel (Baker et al., IJCV 2011): red-yellow, yellow-green,
# green-cyan, cyan-blue, blue-magenta, magenta-red; chosen for perceptual spacing of hues.
_SEGMENTS = (("RY", 15), ("YG", 6), ("GC", 4), ("CB", 11), ("BM", 13), ("MR", 6))
_EPS = 1e-5  # added to the max magnitude, as the reference code does, so zero flow divides safely


def make_colorwheel() -> np.ndarray:
    """The 55-colour Middlebury wheel, float64 ``[55, 3]`` RGB in 0..255 (entry 0 = red = flow to +x)."""
    wheel = []
    for name, n in _SEGMENTS:
        ramp = np.floor(255 * np.arange(n) / n)
        full, zero = np.full(n, 255.0), np.zeros(n)
        wheel.append(
            {
                "RY": (full, ramp, zero),
                "YG": (255 - ramp, full, zero),
                "GC": (zero, full, ramp),
                "CB": (zero, 255 - ramp, full),
                "BM": (ramp, zero, full),
                "MR": (full, zero, 255 - ramp),
            }[name]
        )
    return np.concatenate([np.stack(rgb, -1) for rgb in wheel])


_WHEEL = make_colorwheel()


def flow_to_color(flow: Any, max_flow: float | None = None) -> np.ndarray:
    """Colour-code a flow field with the Middlebury wheel: hue = direction, saturation = magnitude.

    Flow is divided by ``max_flow`` (default: the largest magnitude in ``flow`` plus 1e-5), so
    magnitude 0 is white and magnitude ``max_flow`` a saturated colour; beyond it the colour is
    darkened to 75%. Pixels with non-finite flow are black and do not count towards the maximum.
    Computed in float64; for the same float64 input it matches
    ``flow_vis.flow_to_color(flow, convert_to_bgr=False)`` exactly (for float32 input flow_vis
    computes in float32, so a few pixels may differ by one level).

    Args:
        flow: ``[H, W, 2]`` (or ``[2, H, W]``) numpy array or torch tensor, pixels.
        max_flow: magnitude mapped to full saturation (> 0); pass one value to several calls to
            make their colours comparable.

    Returns:
        ``np.ndarray`` uint8 ``[H, W, 3]`` RGB.

    Example:
        >>> import numpy as np
        >>> flow_to_color(np.array([[[0.0, 0.0], [1.0, 0.0]]]))  # zero -> white, +x -> red
        array([[[255, 255, 255],
                [255,   0,   0]]], dtype=uint8)
    """
    uv = as_hw2("flow", flow, np.float64)
    finite = np.isfinite(uv).all(-1)
    uv = np.where(finite[..., None], uv, 0.0)  # NaN (e.g. invalid KITTI pixels) must not reach the indexing
    u, v = uv[..., 0], uv[..., 1]
    if max_flow is None:
        scale = np.max(np.sqrt(np.square(u) + np.square(v))) + _EPS
    else:
        if isinstance(max_flow, bool) or not isinstance(max_flow, (int, float, np.floating, np.integer)):
            raise TypeError(f"max_flow must be a number, got {type(max_flow).__name__}")
        if not (math.isfinite(max_flow) and max_flow > 0):
            raise ValueError(f"max_flow must be finite and > 0, got {max_flow}")
        scale = float(max_flow)
    color = _uv_to_color(u / scale, v / scale)
    color[~finite] = 0
    return color


def _uv_to_color(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Normalised u, v [H, W] (magnitude 1 = saturated) -> uint8 RGB [H, W, 3]."""
    ncols = len(_WHEEL)
    rad = np.sqrt(np.square(u) + np.square(v))
    angle = np.arctan2(-v, -u) / np.pi  # in [-1, 1]; -1 and 1 are both +x (red)
    fk = (angle + 1) / 2 * (ncols - 1)  # position on the wheel, 0..ncols-1
    k0 = np.floor(fk).astype(np.int32)
    k1 = np.where(k0 + 1 == ncols, 0, k0 + 1)
    f = fk - k0
    wheel = _WHEEL / 255.0  # scaled before blending, as the reference does (same float rounding)
    col = (1 - f)[..., None] * wheel[k0] + f[..., None] * wheel[k1]
    inside = (rad <= 1)[..., None]
    # Inside the unit circle: blend towards white as magnitude shrinks; outside: darken.
    col = np.where(inside, 1 - rad[..., None] * (1 - col), col * 0.75)
    return np.floor(255 * col).astype(np.uint8)


def error_map(flow: Any, gt: Any, valid: Any = None, max_error: float | None = None, cmap: str = "magma") -> np.ndarray:
    """Colour image of the end-point error ``|flow - gt|`` per pixel.

    The error is divided by ``max_error`` (default: the largest error over valid pixels), clipped to
    [0, 1] and mapped through a perceptually uniform matplotlib colormap (dark = small error).
    Invalid pixels are pure black (magma's 0 is (0, 0, 4), so nearly so; pass ``valid`` if the
    difference matters to the reader).

    Args:
        flow, gt: ``[H, W, 2]`` (or ``[2, H, W]``) numpy arrays or torch tensors, same shape.
        valid: optional ``[H, W]`` mask (bool or numbers, nonzero = valid), numpy or torch.
        max_error: error (pixels, > 0) mapped to the top of the colormap.
        cmap: matplotlib colormap name.

    Returns:
        ``np.ndarray`` uint8 ``[H, W, 3]`` RGB.
    """
    try:
        import matplotlib
    except ImportError as e:  # pragma: no cover
        raise ImportError("error_map needs matplotlib (pip install matplotlib)") from e
    flow = as_hw2("flow", flow)
    gt = as_hw2("gt", gt)
    if flow.shape != gt.shape:
        raise ValueError(f"gt must have the shape of flow {flow.shape} (as [H, W, 2]), got {gt.shape}")
    err = np.sqrt(np.square(flow - gt).sum(-1, dtype=np.float64))
    mask = np.isfinite(err)
    if valid is not None:
        v = _to_numpy("valid", valid)
        if v.shape != err.shape:
            raise ValueError(f"valid must have shape [H, W] = {err.shape}, got {tuple(v.shape)}")
        mask &= v != 0
    if max_error is None:
        top = float(err[mask].max()) if mask.any() else 0.0
        top = top if top > 0 else 1.0  # all-zero error: everything maps to the bottom colour
    else:
        if not (isinstance(max_error, (int, float, np.floating, np.integer)) and not isinstance(max_error, bool)):
            raise TypeError(f"max_error must be a number, got {type(max_error).__name__}")
        if not (math.isfinite(max_error) and max_error > 0):
            raise ValueError(f"max_error must be finite and > 0, got {max_error}")
        top = float(max_error)
    level = np.clip(np.where(mask, err, 0.0) / top, 0.0, 1.0)
    image = matplotlib.colormaps[cmap](level, bytes=True)[..., :3]
    image[~mask] = 0
    return np.ascontiguousarray(image, dtype=np.uint8)


def _as_rgb8(name: str, image: Any) -> np.ndarray:
    """uint8 RGB [H, W, 3] from uint8, or float in [0, 1], [H, W, 3] / [H, W] (grey); numpy or torch."""
    arr = _to_numpy(name, image)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ValueError(f"{name} must have shape [H, W, 3] or [H, W], got {tuple(arr.shape)}")
    if arr.dtype == np.uint8:
        return arr
    if arr.dtype.kind == "f":
        # floats are taken as [0, 1]; rounding (not truncation) keeps 1.0 -> 255 and 0.5 -> 128
        return np.rint(np.clip(np.nan_to_num(arr, nan=0.0), 0.0, 1.0) * 255).astype(np.uint8)
    raise TypeError(f"{name} must be uint8 or float in [0, 1], got dtype {arr.dtype}")


def make_panel(images: Sequence[Any], titles: Sequence[str], gap: int = 4) -> np.ndarray:
    """Tile images left to right under a strip of titles.

    Images of different heights are top-aligned on black. Titles wider than their tile are clipped.

    Args:
        images: list of ``[H_i, W_i, 3]`` (or grey ``[H_i, W_i]``) uint8, or float in [0, 1];
            numpy or torch.
        titles: one string per image.
        gap: black pixels between tiles.

    Returns:
        ``np.ndarray`` uint8 ``[T + max H_i, sum W_i + gap * (n - 1), 3]`` RGB, T = title strip height.

    Example:
        >>> import numpy as np
        >>> make_panel([np.zeros((8, 10, 3), np.uint8)] * 2, ["a", "b"]).shape[1]
        24
    """
    from PIL import Image, ImageDraw, ImageFont

    if isinstance(images, (np.ndarray, str)) or not isinstance(images, Sequence):
        raise TypeError(f"images must be a list of images, got {type(images).__name__}")
    if isinstance(titles, str) or not isinstance(titles, Sequence):
        raise TypeError(f"titles must be a list of str, got {type(titles).__name__}")
    if len(images) == 0:
        raise ValueError("images must hold at least one image, got an empty list")
    if len(titles) != len(images):
        raise ValueError(f"titles must have one entry per image ({len(images)}), got {len(titles)}")
    if isinstance(gap, bool) or not isinstance(gap, int) or gap < 0:
        raise ValueError(f"gap must be an int >= 0, got {gap!r}")
    tiles = [_as_rgb8(f"images[{i}]", im) for i, im in enumerate(images)]
    font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    _, _, _, bottom = probe.textbbox((0, 0), "Ag|", font=font)
    pad = 3
    strip = bottom + 2 * pad  # text drawn at y = pad: room for its full box plus padding below
    width = sum(t.shape[1] for t in tiles) + gap * (len(tiles) - 1)
    height = strip + max(t.shape[0] for t in tiles)
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    x = 0
    for tile, title in zip(tiles, titles):
        if not isinstance(title, str):
            raise TypeError(f"titles must hold str, got {type(title).__name__}")
        canvas.paste(Image.fromarray(np.ascontiguousarray(tile)), (x, strip))
        # Draw each title on its own tile-wide image so a long title cannot run into the next one.
        label = Image.new("RGB", (tile.shape[1], strip), (0, 0, 0))
        ImageDraw.Draw(label).text((pad, pad), title, fill=(255, 255, 255), font=font)
        canvas.paste(label, (x, 0))
        x += tile.shape[1] + gap
    return np.asarray(canvas, dtype=np.uint8).copy()


def write_panel(
    path: str | os.PathLike,
    *,
    image: Any = None,
    facial: Any = None,
    head: Any = None,
    expression: Any = None,
    titles: Sequence[str] | None = None,
    max_flow: float | None = None,
) -> np.ndarray:
    """Write a PNG panel: the frame, then the facial / head / expression flows in colour.

    All flows share one normalisation (``max_flow``, default the largest magnitude over all of
    them), so equal colours mean equal motion across the panel; the default titles give that
    scale. Written atomically with Pillow. Items left as None are skipped.

    Args:
        path: the target ``.png`` file.
        image: ``[H, W, 3]`` frame, uint8 or float in [0, 1], numpy or torch.
        facial, head, expression: ``[H, W, 2]`` (or ``[2, H, W]``) flows, pixels.
        titles: one per item given, in the order image, facial, head, expression.
        max_flow: shared magnitude for full saturation (> 0).

    Returns:
        The panel, uint8 ``[H', W', 3]`` (as :func:`make_panel`).
    """
    from PIL import Image

    items = [(n, v) for n, v in (("image", image), ("facial", facial), ("head", head), ("expression", expression))]
    given = [(n, v) for n, v in items if v is not None]
    if not given:
        raise ValueError("write_panel needs at least one of image, facial, head, expression; got none")
    flows = {n: as_hw2(n, v, np.float64) for n, v in given if n != "image"}
    if max_flow is None and flows:
        mags = np.concatenate([np.sqrt(np.square(f).sum(-1)).ravel() for f in flows.values()])
        mags = mags[np.isfinite(mags)]
        max_flow = (float(mags.max()) if mags.size else 0.0) + _EPS
    pictures, default_titles = [], []
    for name, value in given:
        if name == "image":
            pictures.append(_as_rgb8("image", value))
            default_titles.append("image")
        else:
            pictures.append(flow_to_color(flows[name], max_flow=max_flow))
            default_titles.append(f"{name} (max {max_flow:.2f} px)")
    if titles is None:
        titles = default_titles
    elif len(titles) != len(given):
        raise ValueError(
            f"titles must have one entry per item given ({[n for n, _ in given]}), got {len(titles)}: {list(titles)}"
        )
    panel = make_panel(pictures, list(titles))
    buffer = _stdio.BytesIO()
    Image.fromarray(panel).save(buffer, format="PNG")
    atomic_write_bytes(path, buffer.getvalue())
    return panel
