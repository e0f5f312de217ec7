"""Utilities every optical flow user needs: file IO, visualisation, error metrics.

Layouts: IO and visualisation take ``[H, W, 2]`` numpy arrays or torch tensors (u = column (x)
displacement first, pixels; ``[2, H, W]`` accepted too); metrics take ``[B, 2, H, W]`` torch
tensors, as models output them.

Example:
    >>> import torch
    >>> from pyflowops import flow
    >>> flow.flow_metrics(torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3))["epe"]
    0.0
"""

from pyflowops.flow.io import read_flo, read_flow, read_kitti_png, write_flo, write_flow, write_kitti_png
from pyflowops.flow.metrics import epe, flow_metrics, masked_epe, official_ffn_epe, sparse_epe
from pyflowops.flow.viz import error_map, flow_to_color, make_colorwheel, make_panel, write_panel

__all__ = [
    "epe",
    "error_map",
    "flow_metrics",
    "flow_to_color",
    "make_colorwheel",
    "make_panel",
    "masked_epe",
    "official_ffn_epe",
    "read_flo",
    "read_flow",
    "read_kitti_png",
    "sparse_epe",
    "write_flo",
    "write_flow",
    "write_kitti_png",
    "write_panel",
]
