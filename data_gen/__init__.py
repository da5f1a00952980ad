"""data_gen: the PyTorch + diffusers Stable Diffusion 2.1 generator of jaxdiff's full-scale images.

Imports jaxdiff.classes and jaxdiff.schema (no JAX) and never imports JAX itself.
"""
