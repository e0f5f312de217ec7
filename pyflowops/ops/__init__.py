"""Public op functions, one module per family (validation, fake and autograd registration)."""

from pyflowops.ops.corr import corr_lookup, corr_lookup_onthefly, corr_pyramid

__all__ = ["corr_lookup", "corr_lookup_onthefly", "corr_pyramid"]
