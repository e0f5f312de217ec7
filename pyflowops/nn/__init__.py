"""Drop-in modules built on pyflowops ops."""

from pyflowops.nn.corr import AlternateCorrBlock, CorrBlock
from pyflowops.nn.gradreg import GradientRegularization

__all__ = ["AlternateCorrBlock", "CorrBlock", "GradientRegularization"]
