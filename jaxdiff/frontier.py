"""`python -m jaxdiff.frontier --config=configs/toy.py`: the sampler/cost frontier and its agreement studies.

A command only: the code is jaxdiff/studies/frontier.py and the frontier_*.py beside it; importing this
module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.studies.frontier import main

    run(main)
