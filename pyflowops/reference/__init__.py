"""Pure PyTorch twins of every op (the ``torch`` backend and the tests' ground truth)."""
