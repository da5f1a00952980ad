"""`python -m jaxdiff.benchmark --config=configs/toy.py`: training and sampling speed, against the PyTorch peer.

A command only: the code is jaxdiff/tools/benchmark.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.tools.benchmark import main

    run(main)
