"""The model and diffusion core: the UNet, the noise schedule, the samplers, conditioning, data parallelism, the train state.

Imports only `jaxdiff.common`; it knows nothing of datasets, runs on disk or the question asked.
"""
