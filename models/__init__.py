"""pyflowops_models: optical flow networks built on the public ``pyflowops`` API.

Installed from the top-level ``models/`` folder as the import package
``pyflowops_models``::

    import pyflowops_models
    model = pyflowops_models.create("gma", size="small")    # raft | gma | decflow | srflownet
    flow = model.eval()(image1, image2, iters=12)            # images [B, 3, H, W] 0..255 -> [B, 2, H, W]
    pyflowops_models.load_checkpoint(model, "gma-sintel.pth") # official (module.-prefixed) or ours

    decflow = pyflowops_models.create("decflow", semantic_weights="resnet50.pth")
    out = decflow.eval()(image1, image2)                     # {"facial", "head", "expression"}
"""

from .checkpoint import LoadReport, load_checkpoint
from .registry import MODEL_NAMES, SIZES, create
from .train.checkpoint import load

__all__ = ["create", "load", "load_checkpoint", "LoadReport", "MODEL_NAMES", "SIZES"]
