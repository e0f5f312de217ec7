"""FacialFlowNet-style sequences of a synthetic Gaussian head, rendered with exact flow.

A sequence goes from a neutral face (t = 0) to a target expression and head pose
(t = n) over n in {5, 10, 15, 20} steps, as FacialFlowNet builds its data. Each
step t gives one pair in two parallel parts:

* facial: (M_t, M_{t+1}), everything that moves (expression + head motion);
* head:   (M_t, M^h_{t+1}), M^h_{t+1} having t+1's pose and t's expression,

so expression flow = facial flow - head flow, per pixel. The flow is the
Gaussians' own motion composited like their colours (``render_flow(order=1)``),
and the head is alpha-composited over a static textured background plane whose
flow is 0, so image and flow blend identically at silhouette edges.

Everything about sequence ``index`` is drawn from one generator seeded by
(seed, index): shards made by separate processes are reproducible and, for
disjoint index ranges, disjoint.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F

import pyflowops
from pyflowops.flow_render import flow_occlusion, render_flow
from pyflowops.gaussians import Gaussians

from .backgrounds import Backgrounds
from .expression import ACTION_UNITS, EMOTIONS, HeadPose, deform_with_normals, posed, sample_expression, shade
from .head import PARTS, Head, HeadIdentity, build_head

__all__ = ["MOTION_SCALES", "SequenceSpec", "FramePair", "Camera", "sequence_spec", "render_sequence", "render_pair"]

MOTION_SCALES = (5, 10, 15, 20)  # FacialFlowNet's sequence lengths n (motion per pair ~ 1/n of the target)
HEAD_DISTANCE = 4.5  # camera-to-head-centre distance, head units (the head is ~2 wide)
EMOTION_NAMES = tuple(EMOTIONS)
# Cap on each Gaussian's flow gradient (render_flow's max_affine): near-edge-on Gaussians at the
# silhouette otherwise extrapolate tens of pixels of spurious flow; measured at 128^2: the max flow
# of a pair falls from 55 px to 5.6 px while the error at visible surface points stays 0.029 px.
MAX_AFFINE = 4.0


def _hashed_generator(key: str) -> torch.Generator:
    """A generator seeded by a hash of ``key`` (e.g. ``prefix:seed:index``)."""
    digest = hashlib.sha256(key.encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def _texture_stream(generator: torch.Generator) -> torch.Generator:
    """A second stream beside ``generator`` (a sequence's or a subject's): its head's texture noise."""
    return torch.Generator().manual_seed(generator.initial_seed() ^ 0x5EED)


def _sample_light(generator: torch.Generator) -> tuple[float, float, float]:
    """A unit light direction from the camera's side of the head, somewhat above and to a random side."""
    az, el = (torch.rand(2, generator=generator) * 2 - 1).tolist()
    return tuple(F.normalize(torch.tensor([0.8 * az, -0.3 - 0.5 * abs(el), -1.0]), dim=0).tolist())


def sequence_generator(seed: int, index: int) -> torch.Generator:
    """The generator of sequence ``index``: seeded by a hash of (seed, index), not seed + index,
    so runs with neighbouring seeds do not share sequences."""
    return _hashed_generator(f"pyflowops-synth:{seed}:{index}")


@dataclass(frozen=True)
class SequenceSpec:
    """Everything that defines one sequence (its meta.json record).

    ``expression`` holds the target AU intensities (``ACTION_UNITS`` order);
    poses are (yaw, pitch, roll) radians and a translation in head units.
    """

    seed: int
    index: int
    split: str
    size: int
    emotion: str
    num_steps: int
    identity: HeadIdentity
    expression: tuple[float, ...]
    pose_start: HeadPose
    pose_end: HeadPose
    light: tuple[float, float, float]
    background: int  # index into the background set (drawn at render time)
    texture: str | None = None

    @property
    def name(self) -> str:
        """Folder name of the sequence: its index, zero-padded."""
        return f"{self.index:07d}"

    def to_json(self) -> dict:
        record = asdict(self)
        record["action_units"] = list(ACTION_UNITS)
        return record


def sequence_spec(seed: int, index: int, size: int = 512, split: str = "train",
                  emotion: str | None = None, num_steps: int | None = None,
                  texture: str | None = None, motion_scales: tuple[int, ...] = MOTION_SCALES) -> SequenceSpec:
    """Draw sequence ``index`` of a dataset with ``seed``: identity, emotion, n, poses, light, background.

    Args:
        seed, index: the sequence's identity; the same pair gives the same sequence.
        size: image size in pixels (square). split: ``train``, ``val`` or ``test``.
        emotion: one of ``EMOTIONS`` (None: drawn). num_steps: n (None: drawn from ``motion_scales``).
        texture: a face photo path projected onto the head (None: procedural skin).
        motion_scales: the sequence lengths n to draw from (FacialFlowNet's 5, 10, 15, 20).
    """
    if emotion is not None and emotion not in EMOTIONS:
        raise ValueError(f"sequence_spec: emotion must be one of {EMOTION_NAMES}, got {emotion!r}")
    if num_steps is not None and num_steps < 1:
        raise ValueError(f"sequence_spec: num_steps must be >= 1, got {num_steps}")
    if not motion_scales or any(int(n) < 1 for n in motion_scales):
        raise ValueError(f"sequence_spec: motion_scales must be lengths >= 1, got {motion_scales}")
    g = sequence_generator(seed, index)
    pick = lambda n: int(torch.randint(n, (1,), generator=g))  # noqa: E731
    identity = HeadIdentity.sample(g)
    emotion = EMOTION_NAMES[pick(len(EMOTION_NAMES))] if emotion is None else emotion
    drawn = int(motion_scales[pick(len(motion_scales))])  # drawn even when given: the later draws stay put
    num_steps = drawn if num_steps is None else num_steps
    expression = tuple(float(v) for v in sample_expression(emotion, g))
    pose_start = HeadPose.sample(g, max_angle_deg=10.0, max_translation=0.05)
    pose_end = HeadPose.sample(g, max_angle_deg=20.0, max_translation=0.1)
    light = _sample_light(g)
    return SequenceSpec(seed, index, split, size, emotion, num_steps, identity, expression, pose_start, pose_end,
                        light, pick(1 << 30), texture)


@dataclass(frozen=True)
class Camera:
    """A pinhole camera at the origin looking down +z (y down): viewmat [4, 4], K [3, 3]."""

    viewmat: torch.Tensor
    K: torch.Tensor
    size: int

    @classmethod
    def for_size(cls, size: int, face_fraction: float = 0.6) -> Camera:
        """The head (~2 units wide at ``HEAD_DISTANCE``) spans about ``face_fraction`` of the image."""
        focal = face_fraction * size * HEAD_DISTANCE / 2.0
        K = torch.tensor([[focal, 0.0, size / 2], [0.0, focal, size / 2], [0.0, 0.0, 1.0]])
        return cls(torch.eye(4), K, size)


@dataclass
class FramePair:
    """One pair of a sequence, numpy, H = W = size.

    image1: [H, W, 3] uint8 frame t; image2: [H, W, 3] uint8 frame t+1 (facial part);
    image2_head: [H, W, 3] uint8 M^h_{t+1} (head part); flow, flow_head: [H, W, 2]
    float32 pixels (x = column); mask: [H, W] bool, the head (alpha >= 0.5 at t);
    labels: [H, W] uint8 part ids of ``PARTS`` at t (0 = background);
    depth: [H, W] float32 at t (0 on the background); occlusion: [H, W] bool, pixels of
    frame t not visible at t+1 (forward-backward check of the facial flow).
    """

    step: int
    image1: np.ndarray
    image2: np.ndarray
    image2_head: np.ndarray
    flow: np.ndarray
    flow_head: np.ndarray
    mask: np.ndarray
    labels: np.ndarray
    depth: np.ndarray
    occlusion: np.ndarray


@dataclass
class _Frame:
    """One posed state of the head: Gaussians in the camera frame and their shaded colours."""

    gaussians: Gaussians
    colors: torch.Tensor


def _ease(s: float) -> float:
    """Smoothstep: motion starts and ends gently, as a performed expression does."""
    return s * s * (3 - 2 * s)


class _Renderer:
    """Renders the frames of one sequence; images and flows share one camera and background."""

    def __init__(self, spec: SequenceSpec, head: Head, background: np.ndarray) -> None:
        self.spec, self.head = spec, head
        self.camera = Camera.for_size(spec.size)
        self.background = torch.from_numpy(background).float() / 255.0  # [H, W, 3]
        self.light = torch.tensor(spec.light)
        self.target = torch.tensor(spec.expression)
        self.onehot = F.one_hot(head.labels, len(PARTS)).float()  # [N, P]: rendered to a label map

    def state(self, expression_step: int, pose_step: int) -> _Frame:
        """The head with step ``expression_step``'s expression and step ``pose_step``'s pose."""
        n = self.spec.num_steps
        pose = HeadPose.interpolate(self.spec.pose_start, self.spec.pose_end, _ease(pose_step / n))
        return self.state_at(self.target * _ease(expression_step / n), pose)

    def state_at(self, weights: torch.Tensor, pose: HeadPose) -> _Frame:
        """The head with AU ``weights`` [A] (``ACTION_UNITS`` order) and ``pose``."""
        deformed, normals = deform_with_normals(self.head, weights)  # shading follows the deformed surface
        gaussians, normals = posed(deformed, normals, pose, HEAD_DISTANCE)
        return _Frame(gaussians, shade(self.head.albedo, normals, self.light))

    def image(self, frame: _Frame) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(rgb [H, W, 3] in [0, 1] over the background, alpha [H, W], labels [H, W], depth [H, W])."""
        g, cam = frame.gaussians, self.camera
        features = torch.cat([frame.colors, self.onehot], dim=1)
        out, alpha, depth = pyflowops.render(g.means, g.quats, g.scales, g.opacities, features,
                                             cam.viewmat, cam.K, cam.size, cam.size)
        rgb = out[..., :3] + (1 - alpha) * self.background  # the rasterizer's colours are premultiplied
        labels = torch.where(alpha[..., 0] >= 0.5, out[..., 3:].argmax(-1), 0)
        return rgb.clamp(0, 1), alpha[..., 0], labels, depth[..., 0]

    def flow(self, a: _Frame, b: _Frame) -> torch.Tensor:
        """[H, W, 2] flow a -> b, blended with the background's zero flow by a's alpha."""
        ga, gb, cam = a.gaussians, b.gaussians, self.camera
        flow, alpha, _ = render_flow(ga.means, ga.quats, ga.scales, ga.opacities, gb.means, gb.quats, gb.scales,
                                     cam.viewmat, cam.K, cam.size, cam.size, order=1, max_affine=MAX_AFFINE)
        return flow * alpha


def _uint8(rgb: torch.Tensor) -> np.ndarray:
    return (rgb * 255).round().to(torch.uint8).numpy()


def _setup(spec: SequenceSpec, backgrounds: Backgrounds | None, head: Head | None) -> _Renderer:
    backgrounds = Backgrounds() if backgrounds is None else backgrounds
    if head is None:
        g = _texture_stream(sequence_generator(spec.seed, spec.index))
        head = build_head(spec.identity, resolution=spec.size, texture=spec.texture, generator=g)
    return _Renderer(spec, head, backgrounds.pick(spec.background, spec.size))


def _pair(renderer: _Renderer, t: int, current: _Frame, current_image: tuple) -> tuple[FramePair, _Frame, tuple]:
    """Pair t from frame t (already rendered); returns it with frame t+1 and its image for the next step."""
    nxt = renderer.state(t + 1, t + 1)
    head_only = renderer.state(t, t + 1)  # t+1's pose, t's expression
    next_image, head_image = renderer.image(nxt), renderer.image(head_only)
    flow = renderer.flow(current, nxt)
    flow_head = renderer.flow(current, head_only)
    occluded = flow_occlusion(flow, renderer.flow(nxt, current))
    rgb, alpha, labels, depth = current_image
    pair = FramePair(
        step=t,
        image1=_uint8(rgb),
        image2=_uint8(next_image[0]),
        image2_head=_uint8(head_image[0]),
        flow=flow.float().numpy(),
        flow_head=flow_head.float().numpy(),
        mask=(alpha >= 0.5).numpy(),
        labels=labels.to(torch.uint8).numpy(),
        depth=(depth * (alpha >= 0.5)).float().numpy(),
        occlusion=occluded.numpy(),
    )
    return pair, nxt, next_image


def render_sequence(spec: SequenceSpec, backgrounds: Backgrounds | None = None,
                    head: Head | None = None) -> Iterator[FramePair]:
    """The ``spec.num_steps`` pairs of a sequence, first step first (frame t+1 is rendered once).

    Args:
        spec: from :func:`sequence_spec`.
        backgrounds: the background set (None: scikit-image's bundled textures).
        head: a prebuilt head for ``spec.identity`` (None: built here from the sequence's generator).

    Yields:
        :class:`FramePair` for t = 0 .. n-1.
    """
    renderer = _setup(spec, backgrounds, head)
    current = renderer.state(0, 0)
    current_image = renderer.image(current)
    for t in range(spec.num_steps):
        pair, current, current_image = _pair(renderer, t, current, current_image)
        yield pair


def render_pair(spec: SequenceSpec, step: int, backgrounds: Backgrounds | None = None,
                head: Head | None = None) -> FramePair:
    """Pair ``step`` of a sequence alone (what the on-the-fly dataset renders); equal to the
    ``step``-th pair of :func:`render_sequence`."""
    if not 0 <= step < spec.num_steps:
        raise ValueError(f"render_pair: step must be in [0, {spec.num_steps}), got {step}")
    renderer = _setup(spec, backgrounds, head)
    current = renderer.state(step, step)
    return _pair(renderer, step, current, renderer.image(current))[0]
