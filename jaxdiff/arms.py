"""`python -m jaxdiff.arms --config=configs/toy.py`: the arms study: members, records, analysis.

A command only: the code is jaxdiff/studies/arms.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.studies.arms import main

    run(main)
