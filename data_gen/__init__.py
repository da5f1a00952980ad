"""data_gen: the PyTorch + diffusers Stable Diffusion 2.1 generator of jaxdiff's full-scale images.

Imports jaxdiff.data.classes and jaxdiff.data.schema (no JAX) and never imports JAX itself.
"""
