"""Reading and writing optical flow files: Middlebury ``.flo`` and KITTI 2015 16-bit ``.png``.

Flows here are ``[H, W, 2]`` arrays (channel 0 = u = column (x) displacement, channel 1 = v =
row (y) displacement, in pixels). Readers return ``numpy.float32``; writers accept numpy arrays
or torch tensors, ``[H, W, 2]`` or ``[2, H, W]`` (the layout a model's ``[B, 2, H, W]`` output
has per image). A shape that fits both (``[2, W, 2]``) is taken as ``[H, W, 2]``.

Every writer writes a temporary file next to the target and renames it over the target
(:func:`os.replace`), so an interrupted write never leaves a half-written file behind.

Example:
    >>> import numpy as np, tempfile, os
    >>> flow = np.random.rand(5, 7, 2).astype(np.float32)
    >>> path = os.path.join(tempfile.mkdtemp(), "a.flo")
    >>> write_flow(path, flow)
    >>> bool((read_flow(path) == flow).all())
    True
"""

from __future__ import annotations

import io
import os
import struct
import uuid
from typing import Any

import numpy as np

__all__ = ["read_flo", "write_flo", "read_kitti_png", "write_kitti_png", "read_flow", "write_flow"]

FLO_MAGIC = 202021.25  # the float32 "PIEH" tag every Middlebury .flo starts with
_FLO_HEADER = 12  # magic float32 + width int32 + height int32
# Headers beyond this side length are garbage (or a different format), not a real flow field:
# reject them before their implied size is used for anything.
MAX_SIDE = 1 << 16

KITTI_SCALE = 64.0  # KITTI 2015 stores u*64 + 2^15 (and v likewise) in uint16
KITTI_OFFSET = 2.0**15


# ----------------------------------------------------------------------------- helpers


def _check_path(name: str, path: Any) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{name} must be a str or os.PathLike, got {type(path).__name__}")
    return os.fspath(path)


def _to_numpy(name: str, value: Any) -> np.ndarray:
    """numpy view/copy of a numpy array or torch tensor (detached, on the CPU)."""
    if isinstance(value, np.ndarray):
        return value
    try:  # torch is optional for the IO functions
        import torch
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    raise TypeError(f"{name} must be a numpy.ndarray or torch.Tensor, got {type(value).__name__}")


def as_hw2(name: str, flow: Any, dtype: Any = np.float32) -> np.ndarray:
    """``flow`` (numpy or torch, real numbers) as a ``dtype`` (float32) ``[H, W, 2]`` numpy array.

    Accepts ``[H, W, 2]`` or ``[2, H, W]``; ``[H, W, 2]`` wins when both fit.
    """
    arr = _to_numpy(name, flow)
    if arr.dtype.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int), got dtype {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 2:
        out = arr
    elif arr.ndim == 3 and arr.shape[0] == 2:
        out = np.moveaxis(arr, 0, -1)
    else:
        raise ValueError(f"{name} must have shape [H, W, 2] or [2, H, W], got {tuple(arr.shape)}")
    if out.shape[0] == 0 or out.shape[1] == 0:
        raise ValueError(f"{name} must have H, W >= 1, got shape {tuple(arr.shape)}")
    return np.ascontiguousarray(out, dtype=dtype)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same directory + :func:`os.replace`.

    The rename is atomic on POSIX and Windows when both names are on one file system, which the
    same directory guarantees; readers see either the old file or the complete new one.
    """
    path = _check_path("path", path)
    directory = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    # os.open with 0o666 lets the umask pick the mode, like a plain open() would (mkstemp forces 0600).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


# ----------------------------------------------------------------------------- .flo


def read_flo(path: str | os.PathLike) -> np.ndarray:
    """Read a Middlebury ``.flo`` file.

    Format: little-endian float32 magic 202021.25, int32 width, int32 height, then
    ``height * width * 2`` float32 values, (u, v) interleaved, row-major.

    Args:
        path: the file.

    Returns:
        ``np.ndarray`` float32 ``[H, W, 2]`` (u = x/column displacement first).

    Raises:
        ValueError: wrong magic, implausible width/height (checked before anything is allocated),
            or a file size that does not match the header (truncated or trailing bytes).
    """
    path = _check_path("path", path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        header = f.read(_FLO_HEADER)
        if len(header) < _FLO_HEADER:
            raise ValueError(f"{path}: not a .flo file: expected a {_FLO_HEADER}-byte header, found {size} bytes")
        magic, width, height = struct.unpack("<fii", header)
        if magic != np.float32(FLO_MAGIC):
            raise ValueError(f"{path}: not a .flo file: expected magic {FLO_MAGIC}, found {magic!r}")
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise ValueError(
                f"{path}: implausible .flo header: width={width}, height={height} (expected 1..{MAX_SIDE} each)"
            )
        expected = _FLO_HEADER + width * height * 2 * 4
        if size != expected:
            what = "truncated" if size < expected else "trailing bytes"
            raise ValueError(
                f"{path}: {what}: a {width}x{height} .flo needs {expected} bytes, found {size} bytes"
            )
        data = f.read(expected - _FLO_HEADER)
    if len(data) != expected - _FLO_HEADER:  # the file changed under us
        raise ValueError(f"{path}: truncated: expected {expected} bytes, found {_FLO_HEADER + len(data)} bytes")
    return np.frombuffer(data, dtype="<f4").astype(np.float32).reshape(height, width, 2)


def write_flo(path: str | os.PathLike, flow: Any) -> None:
    """Write a Middlebury ``.flo`` file (atomically).

    Args:
        path: the target file (replaced if it exists).
        flow: numpy array or torch tensor, ``[H, W, 2]`` or ``[2, H, W]``; stored as float32
            (non-finite values are kept as they are, as .flo has no validity channel).

    Example:
        >>> import torch, tempfile, os
        >>> write_flo(os.path.join(tempfile.mkdtemp(), "f.flo"), torch.zeros(2, 4, 6))  # [2, H, W]
    """
    path = _check_path("path", path)
    flow = as_hw2("flow", flow)
    height, width = flow.shape[:2]
    if width > MAX_SIDE or height > MAX_SIDE:  # our own reader would reject the file
        raise ValueError(f"flow must have H, W <= {MAX_SIDE}, got shape {flow.shape}")
    header = struct.pack("<fii", FLO_MAGIC, width, height)
    atomic_write_bytes(path, header + flow.astype("<f4", copy=False).tobytes())


# ----------------------------------------------------------------------------- KITTI 16-bit PNG
#
# Pillow (and imageio on top of it) reads 16-bit RGB PNGs as 8 bits per channel and cannot write
# them, so these go through pypng (pure Python, all PNG filters and bit depths).


def encode_png_rgb16(image: np.ndarray) -> bytes:
    """PNG bytes of a uint16 ``[H, W, 3]`` image (colour type 2, bit depth 16)."""
    import png

    height, width, _ = image.shape
    buffer = io.BytesIO()
    png.Writer(width, height, greyscale=False, bitdepth=16, compression=6).write_array(
        buffer, image.astype(np.uint16).reshape(-1)
    )
    return buffer.getvalue()


def decode_png_rgb16(path: str | os.PathLike) -> np.ndarray:
    """uint16 ``[H, W, 3]`` pixels of a 16-bit RGB PNG, all 16 bits kept.

    Raises:
        ValueError: not a PNG, or not 16-bit RGB (the message gives what the file is).
    """
    import png

    path = _check_path("path", path)
    try:
        width, height, rows, info = png.Reader(filename=path).read()
    except png.FormatError as err:
        raise ValueError(f"{path}: not a PNG file ({err})") from err
    depth, planes = info["bitdepth"], info["planes"]
    if depth != 16 or planes != 3 or info.get("palette"):
        colour = 2 if planes == 3 else (0 if planes == 1 else planes)
        raise ValueError(
            f"{path}: expected a 16-bit RGB PNG (bit depth 16, colour type 2), found bit depth {depth}, "
            f"colour type {colour}"
        )
    return np.vstack([np.asarray(row, np.uint16) for row in rows]).reshape(height, width, 3)


def read_kitti_png(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a KITTI 2015 flow PNG (16-bit RGB: R = u*64 + 2^15, G = v*64 + 2^15, B = valid).

    Args:
        path: the file.

    Returns:
        ``(flow, valid)``: float32 ``[H, W, 2]`` (u = x first, resolution 1/64 px) and bool
        ``[H, W]``. Flow at invalid pixels is whatever the file holds (KITTI files store 0 there,
        which reads as -512).
    """
    image = decode_png_rgb16(path)
    flow = (image[..., :2].astype(np.float32) - np.float32(KITTI_OFFSET)) / np.float32(KITTI_SCALE)
    return flow, image[..., 2] > 0


def write_kitti_png(path: str | os.PathLike, flow: Any, valid: Any = None) -> None:
    """Write a KITTI 2015 flow PNG (atomically).

    Values are rounded to the nearest 1/64 px (round-trip error <= 1/128 px; KITTI's devkit
    truncates instead). Invalid pixels are stored as zero flow with B = 0.

    Args:
        path: the target file.
        flow: numpy array or torch tensor, ``[H, W, 2]`` or ``[2, H, W]``, pixels.
        valid: ``[H, W]`` mask (bool or numbers, nonzero = valid), numpy or torch; default all valid.

    Raises:
        ValueError: a valid pixel's flow is not finite or outside [-512, 511.98] px (what 16 bits
            at 1/64 px can hold), or ``valid`` has the wrong shape.
    """
    path = _check_path("path", path)
    flow = as_hw2("flow", flow)
    height, width = flow.shape[:2]
    if valid is None:
        mask = np.ones((height, width), bool)
    else:
        mask = _to_numpy("valid", valid)
        if mask.shape != (height, width):
            raise ValueError(f"valid must have shape [H, W] = {(height, width)}, got {tuple(mask.shape)}")
        mask = mask != 0
    stored = np.rint(flow.astype(np.float64) * KITTI_SCALE + KITTI_OFFSET)
    inside = np.isfinite(stored) & (stored >= 0) & (stored <= 65535)
    bad = mask & ~inside.all(-1)
    if bad.any():
        r, c = np.argwhere(bad)[0]
        raise ValueError(
            f"flow at {int(bad.sum())} valid pixel(s) cannot be stored in a KITTI PNG: components must be finite "
            f"and in [-512, 511.98] px, got {tuple(float(x) for x in flow[r, c])} at row {r}, column {c}"
        )
    stored[~mask] = KITTI_OFFSET  # zero flow where invalid (also makes NaN/huge values there harmless)
    image = np.empty((height, width, 3), np.uint16)
    image[..., :2] = stored.astype(np.uint16)
    image[..., 2] = mask
    atomic_write_bytes(path, encode_png_rgb16(image))


# ----------------------------------------------------------------------------- dispatch


def _extension(path: str) -> str:
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".flo", ".png"):
        raise ValueError(f"path must end in .flo or .png, got {ext or 'no extension'!r} in {path!r}")
    return ext


def read_flow(path: str | os.PathLike) -> np.ndarray:
    """Read a flow file by extension: ``.flo`` (:func:`read_flo`) or ``.png`` (KITTI, :func:`read_kitti_png`).

    Returns:
        float32 ``[H, W, 2]``. For ``.png`` the validity mask is dropped; invalid pixels are set to
        NaN so they cannot be mistaken for motion (use :func:`read_kitti_png` to get the mask).
    """
    path = _check_path("path", path)
    if _extension(path) == ".flo":
        return read_flo(path)
    flow, valid = read_kitti_png(path)
    flow[~valid] = np.nan
    return flow


def write_flow(path: str | os.PathLike, flow: Any) -> None:
    """Write a flow file by extension: ``.flo`` (:func:`write_flo`) or ``.png`` (KITTI, :func:`write_kitti_png`).

    Args:
        path: the target file.
        flow: numpy array or torch tensor, ``[H, W, 2]`` or ``[2, H, W]``. For ``.png``, non-finite
            pixels are written as invalid (so ``write_flow(p, read_flow(p))`` round-trips).
    """
    path = _check_path("path", path)
    if _extension(path) == ".flo":
        write_flo(path, flow)
        return
    flow = as_hw2("flow", flow)
    write_kitti_png(path, flow, valid=np.isfinite(flow).all(-1))
