"""`python -m jaxdiff.vectors --help`: rebuild the bundled word2vec subset.

A command only: the code is jaxdiff/data/vectors.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.data.vectors import main

    run(main)
