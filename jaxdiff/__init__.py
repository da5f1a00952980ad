"""jaxdiff: a word-conditioned pixel diffusion model, trained from scratch on balanced images.

Importing the package is cheap and JAX-free: `jaxdiff.classes` and `jaxdiff.schema` are shared
with the PyTorch generator in data_gen/, which never imports JAX.
"""

__version__ = "0.1.0"
