"""One process of a local multi-process training run; tests/test_multihost.py starts several.

    python tests/multihost_worker.py PROCESS_ID NUM_PROCESSES PORT DATA_DIR WORKDIR OUT_JSON

It starts JAX's distributed runtime exactly as `python -m jaxdiff.train --coordinator_address ...`
does, trains the tiny config, and writes a digest of the parameters this process holds.
"""

import hashlib
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MULTIHOST_OVERRIDES = dict(train__num_steps=4, train__checkpoint_every=2, train__eval_every=2, train__log_every=1,
                           train__sample_every=4)


def main(process_id: str, num_processes: str, port: str, data_dir: str, workdir: str, out: str) -> None:
    from jaxdiff.core import parallel
    from jaxdiff.training import train

    parallel.maybe_initialize_distributed(f"127.0.0.1:{port}", int(num_processes), int(process_id))
    import jax

    from helpers import tiny_config

    state, metrics = train.train_and_evaluate(tiny_config(data_dir, **MULTIHOST_OVERRIDES), workdir)
    local = parallel.fetch({"params": state.params, "ema": state.ema_params})
    digest = hashlib.sha256(b"".join(x.tobytes() for x in jax.tree.leaves(local))).hexdigest()
    with open(out, "w") as f:
        json.dump({"process_index": jax.process_index(), "process_count": jax.process_count(),
                   "device_count": jax.device_count(), "local_device_count": jax.local_device_count(),
                   "digest": digest, "metrics": metrics}, f)


if __name__ == "__main__":
    main(*sys.argv[1:])
