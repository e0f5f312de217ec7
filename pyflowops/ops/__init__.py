"""Public op functions, one module per family (validation, fake and autograd registration)."""

from pyflowops.ops.corr import corr_lookup, corr_lookup_onthefly, corr_pyramid
from pyflowops.ops.gradreg import gradient_regularization, spatial_gradient, textureless_mask

__all__ = [
    "corr_lookup",
    "corr_lookup_onthefly",
    "corr_pyramid",
    "gradient_regularization",
    "spatial_gradient",
    "textureless_mask",
]
