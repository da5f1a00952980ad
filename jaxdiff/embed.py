"""`python -m jaxdiff.embed`: the embedding table of the trained words (JL projection).

A command only: the code is jaxdiff/data/embed.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.data.embed import main

    run(main)
