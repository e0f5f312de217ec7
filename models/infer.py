"""Flow for an image pair or a video with any of the models: the library behind ``pyflowops infer``.

Images are ``[H, W, 3]`` uint8 numpy arrays (RGB); flows ``[H, W, 2]`` float32 (u = x, v = y
displacement in pixels), as in :mod:`pyflowops.flow.io`. Every problem with the input (a file that
is missing or not an image, two images of different sizes, an image too small for the network, a
video with fewer than two frames) raises :class:`InputError`, a ``ValueError`` whose message names
the file or sizes, so a command line can print it as one line.

Example:
    >>> from pyflowops_models import create
    >>> model = create("raft", size="small")
    >>> flows = flow_pair(model, load_image("a.png"), load_image("b.png"), iters=12)  # doctest: +SKIP
    >>> write_outputs("out", "pair", flows, load_image("a.png"))                       # doctest: +SKIP

High resolution: a model built with ``corr="allpairs"`` would store the all-pairs pyramid, about
21 GiB for a 2048x2048 pair; :func:`flow_pair` runs such a model with ``corr="auto"`` whenever the
pyramid would pass the model's ``corr_memory_budget`` (default 2 GiB), so it switches to on-the-fly
correlation (same values, no (HW)^2 volume) by itself. Models built with ``auto`` (the default)
already do this; ``onthefly`` stays as it is.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .correlation import DEFAULT_MEMORY_BUDGET, allpairs_bytes

__all__ = [
    "FLOW_KINDS",
    "check_pair",
    "MIN_SIDE",
    "InputError",
    "flow_pair",
    "infer_video",
    "load_image",
    "needs_onthefly",
    "probe_video",
    "to_rgb8",
    "write_outputs",
]

FLOW_KINDS = ("facial", "head", "expression")  # the order of files and panel columns
MIN_SIDE = 8  # pixels: below one 1/8-resolution feature cell there is nothing to match


class InputError(ValueError):
    """A problem with the input images or video (not with the model); the message is one line for the user."""


# ----------------------------------------------------------------------------- images


def _size(image: np.ndarray) -> str:
    return f"{image.shape[1]}x{image.shape[0]}"  # width x height, as image viewers say it


def to_rgb8(image: np.ndarray, name: str = "image", notes: list[str] | None = None) -> np.ndarray:
    """Any decoded picture as an RGB uint8 ``[H, W, 3]`` array.

    Args:
        image: ``[H, W]`` (grey), ``[H, W, 1]``, ``[H, W, 2]`` (grey + alpha), ``[H, W, 3]`` (RGB)
            or ``[H, W, 4]`` (RGBA); uint8, uint16 (16-bit, scaled by 1/257), other integers
            (taken as 16-bit when above 255), bool, or float (0..1 when at most 1, else 0..255).
        name: what to call it in messages and notes.
        notes: if given, one line per conversion made is appended (grey copied to three
            channels, alpha dropped, 16-bit scaled to 8 bits).

    Returns:
        uint8 ``[H, W, 3]``, C-contiguous and writable (torch.from_numpy warns on read-only arrays).

    Raises:
        InputError: any other shape or dtype, or an empty image.
    """
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise InputError(f"{name}: expected a grey, RGB or RGBA image, got an array of shape {tuple(arr.shape)}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name}: the image is empty ({_size(arr)} pixels)")
    notes = [] if notes is None else notes
    channels = arr.shape[2]
    if channels in (2, 4):
        # Flow is about the picture, not its transparency: drop alpha rather than composite
        # onto a colour we would have to invent.
        arr = arr[:, :, : channels - 1]
        notes.append(f"{name}: {'grey + alpha' if channels == 2 else 'RGBA'} image, alpha channel dropped")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
        notes.append(f"{name}: grey image, copied to 3 channels")
    kind = arr.dtype.kind
    if arr.dtype == np.uint8:
        pass
    elif arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * 255
    elif arr.dtype == np.uint16 or (kind in "iu" and arr.size and arr.max() > 255):
        # 16-bit: round(x / 257) maps 0..65535 exactly onto 0..255.
        arr = np.round(np.clip(arr.astype(np.float64), 0, 65535) / 257.0).astype(np.uint8)
        notes.append(f"{name}: 16-bit image, scaled to 8 bits")
    elif kind in "iu":
        arr = np.clip(arr, 0, 255).astype(np.uint8)
    elif kind == "f":
        values = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=255.0, neginf=0.0)
        scale = 255.0 if values.size and values.max() <= 1.0 else 1.0
        arr = np.round(np.clip(values * scale, 0, 255)).astype(np.uint8)
    else:
        raise InputError(f"{name}: unsupported pixel type {arr.dtype}")
    return np.require(arr, requirements=["C", "W"])


def load_image(path: str | os.PathLike, notes: list[str] | None = None) -> np.ndarray:
    """Read an image file as RGB uint8 ``[H, W, 3]``.

    Grey images are copied to three channels, RGBA (and grey + alpha, and palette images with
    transparency) lose their alpha channel, 16-bit images are scaled to 8 bits; each such
    conversion is reported in ``notes`` when a list is given. The EXIF orientation of camera
    pictures is applied, so the array is upright as image viewers show it.

    Args:
        path: any format Pillow reads (PNG, JPEG, BMP, TIFF, WebP, ...).
        notes: optional list that gets one line per conversion made.

    Returns:
        uint8 ``[H, W, 3]``.

    Raises:
        InputError: the file is missing, a folder, or not an image Pillow can read (the message
            names the file).
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    name = os.fspath(path)
    if not os.path.exists(name):
        raise InputError(f"{name}: no such file")
    if os.path.isdir(name):
        raise InputError(f"{name}: is a folder, not an image file")
    try:
        with Image.open(name) as img:
            img.load()  # decode now: a truncated file fails here, inside the try
            img = ImageOps.exif_transpose(img)
            if img.mode == "P":  # palette: keep its transparency so to_rgb8 can report it
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
                img = img.convert("RGB")
            elif img.mode.startswith("I;16"):
                img = np.asarray(img).astype(np.uint16)  # any byte order -> native uint16
            arr = np.asarray(img)
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image file (Pillow cannot identify it)") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise InputError(f"{name}: cannot read the image ({err})") from None
    return to_rgb8(arr, name=name, notes=notes)


def check_pair(image1: np.ndarray, image2: np.ndarray) -> None:
    """Raise :class:`InputError` unless two ``[H, W, C]`` images have one size of at least 8x8 pixels."""
    if image1.shape[:2] != image2.shape[:2]:
        raise InputError(
            f"the two images differ in size: {_size(image1)} and {_size(image2)} (width x height); "
            "flow needs two images of the same size"
        )
    if min(image1.shape[:2]) < MIN_SIDE:
        raise InputError(
            f"the images are {_size(image1)} pixels: too small, flow needs at least {MIN_SIDE}x{MIN_SIDE}"
        )


# ----------------------------------------------------------------------------- the network


def needs_onthefly(model: nn.Module, height: int, width: int) -> bool:
    """Whether ``model``'s all-pairs pyramid for one ``height`` x ``width`` pair would pass its budget.

    Follows the model's own padding (multiples of 8, at least ``8 * 2^(levels-1)``) and its
    ``corr_memory_budget`` (None = 2 GiB), i.e. exactly what ``corr="auto"`` decides.
    """
    levels = int(getattr(model, "corr_levels", 4))
    min_size = 8 * 2 ** (levels - 1)
    h = max(min_size, -(-height // 8) * 8)
    w = max(min_size, -(-width // 8) * 8)
    budget = getattr(model, "corr_memory_budget", None)
    budget = DEFAULT_MEMORY_BUDGET if budget is None else budget
    return allpairs_bytes(1, h // 8, w // 8, levels) > budget


@contextlib.contextmanager
def _high_res_corr(model: nn.Module, height: int, width: int) -> Iterator[None]:
    """Run an ``allpairs`` model as ``auto`` when the pyramid would not fit; restore it afterwards."""
    previous = getattr(model, "corr", None)
    switch = previous == "allpairs" and needs_onthefly(model, height, width)
    if switch:
        model.corr = "auto"
    try:
        yield
    finally:
        if switch:
            model.corr = previous


def _autocast(device: torch.device, amp: bool):
    if not amp:
        return contextlib.nullcontext()
    # bf16 on the CPU (its fp16 autocast is slow and narrow); fp16 on CUDA as RAFT trains.
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    return torch.autocast(device_type=device.type, dtype=dtype)


def flow_pair(
    model: nn.Module,
    image1: np.ndarray,
    image2: np.ndarray,
    iters: int = 12,
    device: str | torch.device = "cpu",
    amp: bool = False,
) -> dict[str, np.ndarray]:
    """The flow from ``image1`` to ``image2``.

    Args:
        model: a network from ``pyflowops_models.create`` / ``load``; it is moved to ``device``
            and put in eval mode. An ``allpairs`` model runs as ``auto`` for inputs whose
            all-pairs pyramid would pass its memory budget (see the module docstring).
        image1, image2: ``[H, W, 3]`` uint8 RGB (anything :func:`to_rgb8` takes), same size,
            at least 8x8 pixels.
        iters: refinement iterations (>= 1).
        device: where to run (``cpu``, ``cuda``, ``cuda:1``, ...).
        amp: autocast (bfloat16 on the CPU, float16 on CUDA); correlation stays float32.

    Returns:
        ``{"facial": [H, W, 2]}`` float32, plus ``"head"`` and ``"expression"`` for DecFlow.

    Raises:
        InputError: different sizes (both are named) or an image smaller than 8x8.
    """
    a = to_rgb8(image1, "image 1")
    b = to_rgb8(image2, "image 2")
    check_pair(a, b)
    height, width = a.shape[:2]
    if int(iters) < 1:
        raise ValueError(f"flow_pair: iters must be >= 1, got {iters}")
    device = torch.device(device)
    model = model.to(device).eval()
    t1, t2 = (torch.from_numpy(x).permute(2, 0, 1)[None].to(device=device, dtype=torch.float32) for x in (a, b))
    with torch.no_grad(), _autocast(device, amp), _high_res_corr(model, height, width):
        out = model(t1, t2, iters=int(iters))
    if isinstance(out, dict):
        flows = {k: out[k] for k in FLOW_KINDS if k in out}
    elif isinstance(out, (list, tuple)):  # a model left in train mode by a wrapper: the last iterate
        flows = {"facial": out[-1]}
    else:
        flows = {"facial": out}
    return {k: v[0].float().permute(1, 2, 0).cpu().numpy() for k, v in flows.items()}


# ----------------------------------------------------------------------------- outputs


def write_outputs(
    out_dir: str | os.PathLike, name: str, flows: dict[str, np.ndarray], image1: np.ndarray
) -> list[Path]:
    """Write one pair's flows: ``.flo`` and colour ``.png`` per kind, and a panel.

    Args:
        out_dir: folder (created with its parents).
        name: file name stem, e.g. ``pair`` or ``frame_000123``.
        flows: kind -> ``[H, W, 2]`` float flow (as :func:`flow_pair` returns).
        image1: the first image ``[H, W, 3]`` uint8, the panel's first column.

    Returns:
        The paths written: ``<name>_<kind>.flo`` and ``<name>_<kind>.png`` per kind (in the order
        facial, head, expression), then ``<name>_panel.png`` (the image and the flows side by
        side, all flows on one colour scale). Each colour PNG is scaled by its own maximum.
    """
    from pyflowops.flow.io import write_flo
    from pyflowops.flow.viz import flow_to_color, write_panel
    from PIL import Image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    kinds = [k for k in FLOW_KINDS if k in flows] + [k for k in flows if k not in FLOW_KINDS]
    for kind in kinds:
        flo = out / f"{name}_{kind}.flo"
        write_flo(flo, flows[kind])
        png = out / f"{name}_{kind}.png"
        Image.fromarray(flow_to_color(flows[kind])).save(png)
        written += [flo, png]
    panel = out / f"{name}_panel.png"
    write_panel(panel, image=to_rgb8(image1, "image 1"), **{k: flows[k] for k in FLOW_KINDS if k in flows})
    written.append(panel)
    return written


# ----------------------------------------------------------------------------- video


def _one_line(err: BaseException) -> str:
    """``Type: message`` on one line (imageio's messages span several), at most 300 characters."""
    text = " ".join(f"{type(err).__name__}: {err}".split())
    return text if len(text) <= 300 else text[:297] + "..."


def _check_video_path(name: str) -> None:
    if not os.path.exists(name):
        raise InputError(f"{name}: no such video file")
    if os.path.isdir(name):
        raise InputError(f"{name}: is a folder, not a video file")


def _frames(path: str, every: int, notes: list[str] | None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB uint8 frame) of frames 0, every, 2*every, ...; reader errors become InputError."""
    import warnings

    import imageio.v3 as iio

    with warnings.catch_warnings():
        # imageio's plugin search imports deprecated plugins (legacy DICOM) and warns about it.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            reader = iter(iio.imiter(path))
        except Exception as err:  # imageio raises many types (OSError, ValueError, its own) for bad files
            raise InputError(f"{path}: cannot read the video ({_one_line(err)})") from None
        index = 0
        while True:
            try:
                frame = next(reader)
            except StopIteration:
                return
            except Exception as err:
                what = "the video" if index == 0 else f"frame {index}"
                raise InputError(f"{path}: cannot read {what} ({_one_line(err)})") from None
            if index % every == 0:
                # Conversion notes once, from the first frame: every frame of a video is alike.
                yield index, to_rgb8(frame, name=f"{path} frame {index}", notes=notes if index == 0 else None)
            index += 1


def probe_video(path: str | os.PathLike, notes: list[str] | None = None) -> tuple[int, int]:
    """(height, width) of a video's first frame: a cheap check that the file can be read.

    ``notes``, if given, gets the first frame's conversion notes (as :func:`to_rgb8`).

    Raises:
        InputError: missing file, a folder, or no frame can be decoded.
    """
    name = os.fspath(path)
    _check_video_path(name)
    frames = _frames(name, 1, notes)
    try:
        first = next(frames, None)
    finally:
        frames.close()
    if first is None:
        raise InputError(f"{name}: the video has no frames")
    return first[1].shape[0], first[1].shape[1]


def infer_video(
    model: nn.Module,
    path: str | os.PathLike,
    out_dir: str | os.PathLike,
    every: int = 1,
    iters: int = 12,
    device: str | torch.device = "cpu",
    amp: bool = False,
    progress: bool = True,
    notes: list[str] | None = None,
) -> int:
    """Flow between consecutive sampled frames of a video, written as :func:`write_outputs` does.

    Frames are read one at a time through ``imageio.v3.imiter`` (GIF always; MP4 and others
    when a backend such as pyav or imageio-ffmpeg is installed), so a long video never sits in
    memory. ``every`` samples the video: frames 0, N, 2N, ... are kept and each kept frame is
    paired with the next kept one, i.e. pairs (k, k + N); a 4-frame video gives 3 pairs with
    N = 1 and 1 pair (0, 2) with N = 2. Pair (k, k + N) is written as ``frame_<k:06d>_*``.

    Args:
        model, iters, device, amp: as :func:`flow_pair`.
        path: the video file.
        out_dir: output folder (created).
        every: the sampling step N (>= 1).
        progress: show a tqdm bar (on stderr) over the pairs.
        notes: optional list that gets the first frame's conversion notes.

    Returns:
        The number of pairs written.

    Raises:
        InputError: missing or unreadable file, or fewer than two sampled frames.
    """
    from tqdm import tqdm

    name = os.fspath(path)
    if int(every) < 1:
        raise ValueError(f"infer_video: every must be >= 1, got {every}")
    _check_video_path(name)
    total = None
    with contextlib.suppress(Exception):  # the frame count is only for the bar; not every format knows it
        import imageio.v3 as iio

        count = iio.improps(name).n_images
        total = max(0, (count - 1) // every) if count else None
    pairs = 0
    previous: tuple[int, np.ndarray] | None = None
    with tqdm(total=total, unit="pair", desc=os.path.basename(name), disable=not progress) as bar:
        for index, frame in _frames(name, int(every), notes):
            if previous is not None:
                if frame.shape != previous[1].shape:
                    raise InputError(
                        f"{name}: frame {index} is {_size(frame)}, frame {previous[0]} {_size(previous[1])}; "
                        "all frames must have one size"
                    )
                flows = flow_pair(model, previous[1], frame, iters=iters, device=device, amp=amp)
                write_outputs(out_dir, f"frame_{previous[0]:06d}", flows, previous[1])
                pairs += 1
                bar.update(1)
            previous = (index, frame)
    if pairs == 0:
        seen = "no frames" if previous is None else "only one frame"
        raise InputError(f"{name}: {seen} to pair (--every {every}); a video needs at least two sampled frames")
    return pairs
