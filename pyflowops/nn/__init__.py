"""Drop-in modules built on pyflowops ops."""

from pyflowops.nn.corr import AlternateCorrBlock, CorrBlock

__all__ = ["AlternateCorrBlock", "CorrBlock"]
