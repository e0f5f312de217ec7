"""Classical optical flow baselines with one signature, for the evaluation table.

Every method is ``method(image1, image2) -> flow`` with

* ``image1``, ``image2``: RGB ``[H, W, 3]`` numpy arrays (or grey ``[H, W]``), uint8, or float in
  0..255 (the models' input range; a float image whose maximum is <= 1 is read as 0..1);
* ``flow``: float32 ``[H, W, 2]``, forward flow from image 1 to image 2 in pixels,
  channel 0 = u = column (x) displacement, so ``image1[y, x] ~ image2[y + v, x + u]``.

``BASELINES`` maps the names ``zero``, ``farneback``, ``dis``, ``tvl1`` to the functions.

Example:
    >>> import numpy as np
    >>> BASELINES["zero"](np.zeros((4, 6, 3), np.uint8), np.zeros((4, 6, 3), np.uint8)).shape
    (4, 6, 2)
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

__all__ = ["BASELINES", "zero", "farneback", "dis", "tvl1", "to_grey"]


def to_grey(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Grey uint8 ``[H, W]`` from an RGB ``[H, W, 3]`` or grey ``[H, W]`` uint8 / float image (see module doc)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if not (arr.ndim == 2 or (arr.ndim == 3 and arr.shape[2] == 3)):
        raise ValueError(f"{name} must have shape [H, W, 3] or [H, W], got {arr.shape}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind not in "fiu":
            raise TypeError(f"{name} must be uint8 or float, got dtype {arr.dtype}")
        arr = arr.astype(np.float32)
        finite = arr[np.isfinite(arr)]
        if finite.size and finite.max() <= 1.0:  # a 0..1 image: stretch it, or it would round to black
            arr = arr * 255.0
        arr = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
    if arr.ndim == 3:
        # ITU-R 601 luma, as cv2.cvtColor(RGB2GRAY); written out so grey and RGB input take one path
        arr = np.rint(arr @ np.array([0.299, 0.587, 0.114], np.float32)).clip(0, 255).astype(np.uint8)
    return np.ascontiguousarray(arr)


def _pair(image1: np.ndarray, image2: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    g1, g2 = to_grey(image1, "image1"), to_grey(image2, "image2")
    if g1.shape != g2.shape:
        raise ValueError(f"image1 and image2 must have the same size, got {g1.shape} and {g2.shape}")
    return g1, g2


def zero(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """No motion: all-zero flow ``[H, W, 2]`` (the EPE of this is the mean ground-truth magnitude)."""
    g1, _ = _pair(image1, image2)
    return np.zeros((*g1.shape, 2), np.float32)


def farneback(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """OpenCV Farneback (polynomial expansion) on the grey images, ``[H, W, 2]`` float32.

    Parameters: a 0.5 pyramid with up to 5 levels (coarsest side kept >= 16 px), so motions of
    tens of pixels are reachable; a 15 px Gaussian-weighted window (smoother and more accurate
    than the box window); 5 iterations per level; polynomial neighbourhood 5 with sigma 1.1, the
    values OpenCV's documentation recommends for poly_n = 5.
    """
    import cv2

    g1, g2 = _pair(image1, image2)
    levels = int(max(0, min(5, np.floor(np.log2(max(min(g1.shape), 16) / 16)))))
    flow = cv2.calcOpticalFlowFarneback(g1, g2, None, pyr_scale=0.5, levels=levels, winsize=15, iterations=5,
                                        poly_n=5, poly_sigma=1.1, flags=cv2.OPTFLOW_FARNEBACK_GAUSSIAN)
    return np.ascontiguousarray(flow, dtype=np.float32)


def dis(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """OpenCV DIS (dense inverse search, Kroeger et al. 2016), ``PRESET_MEDIUM``, ``[H, W, 2]`` float32."""
    import cv2

    g1, g2 = _pair(image1, image2)
    flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM).calc(g1, g2, None)
    return np.ascontiguousarray(flow, dtype=np.float32)


def tvl1(image1: np.ndarray, image2: np.ndarray) -> np.ndarray:
    """scikit-image TV-L1 (Zach et al. 2007) on the grey images, ``[H, W, 2]`` float32.

    ``optical_flow_tvl1(reference, moving)`` finds ``(v, u)`` (row first) with
    ``reference(r, c) ~ moving(r + v, c + u)``: with image 1 as the reference that is our forward
    flow, with the channels swapped to (u, v).
    """
    from skimage.registration import optical_flow_tvl1

    g1, g2 = _pair(image1, image2)
    v, u = optical_flow_tvl1(g1.astype(np.float32) / 255.0, g2.astype(np.float32) / 255.0, dtype=np.float32)
    return np.ascontiguousarray(np.stack([u, v], axis=-1), dtype=np.float32)


BASELINES: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "zero": zero,
    "farneback": farneback,
    "dis": dis,
    "tvl1": tvl1,
}
