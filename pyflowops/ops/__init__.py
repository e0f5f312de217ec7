"""Public op functions, one module per family (validation, fake and autograd registration)."""

from pyflowops.ops.corr import corr_lookup, corr_lookup_onthefly, corr_pyramid
from pyflowops.ops.gradreg import gradient_regularization, spatial_gradient, textureless_mask
from pyflowops.ops.splat import project_gaussians, rasterize_gaussians, render

__all__ = [
    "corr_lookup",
    "corr_lookup_onthefly",
    "corr_pyramid",
    "gradient_regularization",
    "project_gaussians",
    "rasterize_gaussians",
    "render",
    "spatial_gradient",
    "textureless_mask",
]
