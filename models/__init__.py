"""pyflowops_models: optical flow networks built on the public ``pyflowops`` API.

Installed from the top-level ``models/`` folder as the import package
``pyflowops_models``::

    import pyflowops_models
    model = pyflowops_models.create("raft", size="small")   # images [B, 3, H, W], 0..255
    flow = model.eval()(image1, image2, iters=12)            # [B, 2, H, W]
"""

from .registry import MODEL_NAMES, SIZES, create

__all__ = ["create", "MODEL_NAMES", "SIZES"]
