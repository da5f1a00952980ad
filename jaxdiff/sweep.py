"""`python -m jaxdiff.sweep --config=configs/toy.py`: train and evaluate a grid of seeds, pooled.

A command only: the code is jaxdiff/studies/sweep.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.studies.sweep import main

    run(main)
