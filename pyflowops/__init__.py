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

from pyflowops import nn  # torch.nn-style access: pyflowops.nn.CorrBlock after `import pyflowops`

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailableError",
    "available_backends",
    "build_info",
    "corr_lookup",
    "corr_lookup_onthefly",
    "corr_pyramid",
    "gradient_regularization",
    "nn",
    "spatial_gradient",
    "textureless_mask",
    "use_backend",
]
