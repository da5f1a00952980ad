"""`python -m jaxdiff.device_check`: the GPU session's check of the stages on one device.

A command only: the code is jaxdiff/tools/device_check.py; importing this module does nothing.
"""

if __name__ == "__main__":
    from jaxdiff.common.startup import prepare_process

    prepare_process()  # before JAX and TensorFlow load: see jaxdiff/common/startup.py

    from jaxdiff.common.cli import run
    from jaxdiff.tools.device_check import main

    run(main)
