"""pyflowops: fast, memory-lean kernels for facial optical flow.

Example:
    >>> import pyflowops
    >>> "torch" in pyflowops.available_backends()
    True
"""

from pyflowops._backend import (
    BackendUnavailableError,
    available_backends,
    build_info,
    use_backend,
)
from pyflowops.ops.corr import corr_lookup, corr_lookup_onthefly, corr_pyramid
from pyflowops.ops.gradreg import gradient_regularization, spatial_gradient, textureless_mask
from pyflowops.ops.splat import project_gaussians, rasterize_gaussians, render
from pyflowops.flow_render import composite_flow, flow_features, flow_occlusion, render_flow
from pyflowops.gaussians import Gaussians

from pyflowops import nn  # torch.nn-style access: pyflowops.nn.CorrBlock after `import pyflowops`
from pyflowops import flow  # flow IO / visualisation / metrics: pyflowops.flow.read_flo

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "Gaussians",
    "available_backends",
    "build_info",
    "composite_flow",
    "corr_lookup",
    "corr_lookup_onthefly",
    "corr_pyramid",
    "flow",
    "flow_features",
    "flow_occlusion",
    "gradient_regularization",
    "nn",
    "project_gaussians",
    "rasterize_gaussians",
    "render",
    "render_flow",
    "spatial_gradient",
    "textureless_mask",
    "use_backend",
]
