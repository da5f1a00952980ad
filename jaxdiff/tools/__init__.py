"""Tools beside the research: the training/sampling benchmark, its PyTorch peer and the GPU device check."""
