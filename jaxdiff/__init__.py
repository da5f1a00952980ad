"""jaxdiff: a word-conditioned pixel diffusion model, trained from scratch on balanced images.

Importing the package, or any module in it, has no side effects on the process: it changes no
environment variable and never restarts the interpreter. `jaxdiff.data.classes` and `jaxdiff.data.schema`
are shared with the PyTorch generator in data_gen/, which never imports JAX. The command lines
(`python -m jaxdiff.<command>`) set the process up first: see `jaxdiff.common.startup`.
"""

__version__ = "0.1.0"
