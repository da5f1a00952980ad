"""Data: the portraits, the word vectors, the embedding table (and its arms), the input pipeline, the TFRecord schema, the classes.

`classes` and `schema` are shared with the PyTorch generator in data_gen/, which never imports JAX:
this package's `__init__` imports nothing. The bundled word vectors live beside the modules.
"""
