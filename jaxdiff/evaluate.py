"""`python -m jaxdiff.evaluate --workdir=runs/toy`: classify a trained run's samples and write its report.

A command only: the code is jaxdiff/measurement/evaluate.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.measurement.evaluate import main

    run(main)
