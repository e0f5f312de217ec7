"""The maps MER papers feed a recogniser: horizontal flow u, vertical flow v and optical strain on the face.

STSTNet, OFF-ApexNet and the MEGC 2019 composite-benchmark baselines compute optical flow from the
onset to the apex frame of a clip, crop it to the face and resize it to a small square; this module
does the last two steps and the strain:

* :func:`optical_strain`: ``flow [H, W, 2] -> [H, W]``, the magnitude of the infinitesimal strain tensor;
* :func:`face_box`: the face square ``(y0, y1, x0, x1)`` from a face mask, else OpenCV's Haar cascade,
  else the centred square of the image;
* :func:`flow_representation`: ``flow [H, W, 2], box -> [3, size, size]`` = (u, v, strain) in
  representation pixels.

Flow convention (as :mod:`pyflowops_models.baselines`): channel 0 = u = column (x) displacement,
channel 1 = v = row (y) displacement, in pixels.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np

__all__ = ["face_box", "flow_representation", "optical_strain"]

HAAR_CASCADE = "haarcascade_frontalface_default.xml"


def _check_flow(flow: np.ndarray, name: str = "flow") -> np.ndarray:
    arr = np.asarray(flow)
    if arr.ndim != 3 or arr.shape[2] != 2:
        raise ValueError(f"{name} must have shape [H, W, 2] (u, v), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    return arr


def optical_strain(flow: np.ndarray, dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Optical strain magnitude ``[H, W]`` (``dtype``, float32 by default) of a flow ``[H, W, 2]``.

    The strain tensor is the symmetric part of the flow's Jacobian, ε = ½(∇w + ∇wᵀ) with w = (u, v):
    εxx = ∂u/∂x, εyy = ∂v/∂y, εxy = εyx = ½(∂u/∂y + ∂v/∂x). The magnitude returned is its Frobenius
    norm, sqrt(εxx² + εyy² + 2 εxy²), so a rigid motion (translation, small rotation u = -θy, v = θx)
    has zero strain. Some MER papers (e.g. the STSTNet / Shreve et al. line) write the variant
    sqrt(εxx² + εyy² + εxy²) or use (∂u/∂y + ∂v/∂x) without the ½; those differ from this one only
    where shear is present.

    Derivatives are central differences (``np.gradient``; one-sided at the borders), computed in
    float64. ``H`` and ``W`` must be >= 2.

    NaN / inf: nothing raises; the output is NaN where the flow is not finite and at the pixels whose
    differences read such a pixel (its 4-neighbours); finite everywhere else.
    """
    arr = _check_flow(flow)
    if arr.shape[0] < 2 or arr.shape[1] < 2:
        raise ValueError(f"flow must be at least 2 x 2 for finite differences, got {arr.shape[:2]}")
    u = arr[..., 0].astype(np.float64)
    v = arr[..., 1].astype(np.float64)
    du_dy, du_dx = np.gradient(u)
    dv_dy, dv_dx = np.gradient(v)
    exy = 0.5 * (du_dy + dv_dx)
    with np.errstate(invalid="ignore", over="ignore"):
        strain = np.sqrt(du_dx**2 + dv_dy**2 + 2.0 * exy**2)
    strain[~(np.isfinite(u) & np.isfinite(v))] = np.nan
    return strain.astype(dtype)


def _square_box(y0: float, y1: float, x0: float, x1: float, margin: float, height: int,
                width: int) -> tuple[int, int, int, int]:
    """The box grown by ``margin`` of its size on each side, made square about its centre, clipped."""
    side = max(y1 - y0, x1 - x0) * (1.0 + 2.0 * margin)
    cy, cx = (y0 + y1) / 2.0, (x0 + x1) / 2.0
    top, left = int(np.floor(cy - side / 2.0 + 0.5)), int(np.floor(cx - side / 2.0 + 0.5))
    side_px = max(1, int(np.floor(side + 0.5)))
    return (max(0, top), min(height, top + side_px), max(0, left), min(width, left + side_px))


@functools.lru_cache(maxsize=4)
def _cascade(path: str):
    import cv2

    if not hasattr(cv2, "CascadeClassifier") or not os.path.isfile(path):
        return None
    classifier = cv2.CascadeClassifier(path)
    return None if classifier.empty() else classifier


def _haar_faces(grey: np.ndarray, cascade_path: str | None) -> np.ndarray | None:
    """Haar detections ``[K, 4]`` (x, y, w, h), or None when this OpenCV has no cascade to run."""
    import cv2

    if cascade_path is None:
        base = getattr(getattr(cv2, "data", None), "haarcascades", "")
        cascade_path = os.path.join(base, HAAR_CASCADE)
    classifier = _cascade(cascade_path)
    if classifier is None:
        warnings.warn(f"no Haar face cascade available ({cascade_path!r} missing, or this OpenCV build has no "
                      "CascadeClassifier, e.g. OpenCV >= 5 without contrib): face_box falls back to the centred "
                      "square of the image; pass a face mask for a real crop", RuntimeWarning, stacklevel=3)
        return None
    min_side = max(16, min(grey.shape) // 8)
    faces = classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_side, min_side))
    return np.asarray(faces, dtype=np.int64).reshape(-1, 4)


def face_box(image: np.ndarray, mask: np.ndarray | None = None, margin: float = 0.1,
             cascade_path: str | None = None) -> tuple[int, int, int, int]:
    """The face square ``(y0, y1, x0, x1)`` (half-open, clipped to the image) of ``image``.

    ``image``: ``[H, W, 3]`` uint8 RGB or ``[H, W]`` grey (float images: see
    :func:`pyflowops_models.baselines.to_grey`). ``mask``: optional ``[H, W]``, nonzero = face.

    1. With a non-empty mask: the mask's bounding box, grown by ``margin`` x its height (top and bottom)
       and x its width (left and right), then made square with side = the larger grown side, centre kept;
    2. else OpenCV's Haar frontal face cascade (``cv2.data.haarcascades + "haarcascade_frontalface_default.xml"``,
       or ``cascade_path``) on the grey image: the largest detection, grown and squared the same way;
    3. else (nothing detected, or no cascade in this OpenCV build: a RuntimeWarning says so) the centred
       largest square of the image.

    The box is clipped to the image last, so near a border it can be narrower than square; every
    returned box is non-empty.
    """
    from ..baselines import to_grey

    grey = to_grey(image)
    height, width = grey.shape
    if not np.isfinite(margin) or margin < 0:
        raise ValueError(f"margin must be a finite number >= 0, got {margin}")
    if mask is not None:
        m = np.asarray(mask)
        if m.shape != (height, width):
            raise ValueError(f"mask must have the image's shape {(height, width)}, got {m.shape}")
        rows, cols = np.nonzero(m)
        if rows.size:
            return _square_box(rows.min(), rows.max() + 1, cols.min(), cols.max() + 1, margin, height, width)
    faces = _haar_faces(grey, cascade_path)
    if faces is not None and len(faces):
        x, y, w, h = faces[np.argmax(faces[:, 2] * faces[:, 3])].tolist()
        return _square_box(y, y + h, x, x + w, margin, height, width)
    side = min(height, width)
    y0, x0 = (height - side) // 2, (width - side) // 2
    return (y0, y0 + side, x0, x0 + side)


def flow_representation(flow: np.ndarray, box, size: int = 48) -> np.ndarray:
    """The network's input ``[3, size, size]`` float32 = (u, v, strain) of ``flow [H, W, 2]`` on the face.

    ``box`` = ``(y0, y1, x0, x1)`` (half-open, as :func:`face_box`) must lie inside the flow and be
    non-empty. The crop is resized to ``size x size`` with ``cv2.INTER_AREA`` and u, v are multiplied
    by the resize factors (``size / box width``, ``size / box height``), so they are displacements in
    representation pixels; the strain is then computed on the resized u, v (:func:`optical_strain`).
    Strain is scale-free: a uniform scale multiplies displacements and distances alike, so the
    derivatives (and the strain) are unchanged; for a non-square box the two axes scale differently
    and the shear term changes accordingly.

    Non-finite flow propagates (an output pixel whose area reads a NaN is NaN): clean the flow first.
    """
    import cv2

    arr = _check_flow(flow)
    size = int(size)
    if size < 2:
        raise ValueError(f"size must be >= 2, got {size}")
    try:
        y0, y1, x0, x1 = (int(b) for b in box)
    except (TypeError, ValueError):
        raise ValueError(f"box must be four integers (y0, y1, x0, x1), got {box!r}") from None
    height, width = arr.shape[:2]
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ValueError(f"box (y0, y1, x0, x1) = {(y0, y1, x0, x1)} must be non-empty and inside the flow "
                         f"[0, {height}) x [0, {width})")
    crop = np.ascontiguousarray(arr[y0:y1, x0:x1], dtype=np.float32)
    resized = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA).reshape(size, size, 2)
    resized[..., 0] *= size / (x1 - x0)
    resized[..., 1] *= size / (y1 - y0)
    out = np.empty((3, size, size), np.float32)
    out[0], out[1] = resized[..., 0], resized[..., 1]
    out[2] = optical_strain(resized)
    return out
