"""`python -m jaxdiff.sampler_pairs`: how often two samplers read the same image differently (sizes a study).

A command only: the code is jaxdiff/tools/sampler_pairs.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.tools.sampler_pairs import main

    run(main)
