"""`python -m jaxdiff.portraits --out data/portraits`: draw the synthetic portrait dataset.

A command only: the code is jaxdiff/data/portraits.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.data.portraits import main

    run(main)
