"""`python -m jaxdiff.train --config=configs/toy.py`: train the word-conditioned UNet.

A command only: the code is jaxdiff/training/train.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.training.train import main

    run(main)
