"""Synthetic facial optical-flow data: a procedural Gaussian head (``head``), its expression
model (``expression``), and the sequence rendering, writing, loading and augmentation built on them."""
