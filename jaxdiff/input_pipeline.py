"""`python -m jaxdiff.input_pipeline --config=configs/toy.py`: build or check the TFRecord dataset.

A command only: the code is jaxdiff/data/input_pipeline.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.data.input_pipeline import main

    run(main)
