"""Triton kernels of pyflowops, one module per op family (``corr``, ...).

Each module defines ``pyflowops::<op>_triton`` ops with ``torch.library.triton_op``
so that ``torch.compile`` can trace them. Importing a module registers its ops;
this package does not import them itself (Triton is optional), ``pyflowops.ops``
does when the ``triton`` backend is available.
"""
