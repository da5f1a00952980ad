"""`python -m jaxdiff.experiment --config=configs/toy.py`: the main job: dataset, training, classifier, evaluation.

A command only: the code is jaxdiff/studies/experiment.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.studies.experiment import main

    run(main)
