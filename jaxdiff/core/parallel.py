"""Devices and data parallelism: the one-axis mesh ('data',), global batches, multi-process start-up."""

from typing import Any, Callable, Sequence

import jax
import numpy as np
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from jaxdiff.common.errors import UserError

DATA_AXIS = "data"


def make_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A one-axis mesh over `devices` (default: every device of every process)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), (DATA_AXIS,))


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array (parameters, optimiser state, keys)."""
    return NamedSharding(mesh, P())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """The leading (batch) axis is split over the data axis."""
    return NamedSharding(mesh, P(DATA_AXIS))


def data_parallel_value_and_grad(shard_loss: Callable[[Any, Any, jax.Array], jax.Array],
                                 mesh: Mesh) -> Callable[[Any, Any], tuple[jax.Array, Any]]:
    """`(params, batch) -> (loss, grads)` for the mean loss over a batch split along 'data'.

    `shard_loss(params, rows, first_index)` is the mean loss of one device's rows, `first_index`
    the global index of its first row. Each device differentiates its own share; the losses and
    gradients are then averaged over the devices (the shares are equal, so this is the mean over
    the global batch). The gradients travel as one flat vector: XLA:CPU all-reduces the toy UNet's
    184 parameter arrays as a tuple in 10.8 ms and the same numbers as one buffer in 0.4 ms, and
    one large all-reduce is what gradient bucketing aims for on accelerators too.
    """
    def on_each_device(params, rows):
        num_rows = jax.tree.leaves(rows)[0].shape[0]
        first_index = jax.lax.axis_index(DATA_AXIS) * num_rows
        loss, grads = jax.value_and_grad(shard_loss)(params, rows, first_index)
        flat_grads, unravel = ravel_pytree(grads)
        return jax.lax.pmean(loss, DATA_AXIS), unravel(jax.lax.pmean(flat_grads, DATA_AXIS))

    # check_vma=False: with it, JAX would require custom-VJP layers (models.GroupNorm) to psum their
    # parameters' gradients themselves; without it every layer returns this device's own gradient
    # for a replicated parameter, and the one pmean above averages them all.
    return jax.shard_map(on_each_device, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()),
                         check_vma=False)


def local_batch_size(global_batch: int, mesh: Mesh) -> int:
    """This process's share of a global batch; it must split evenly over processes and devices."""
    if global_batch % mesh.size:
        raise UserError(f"train.batch_size {global_batch} must be divisible by the {mesh.size} devices; "
                        f"set --config.train.batch_size to a multiple of {mesh.size}")
    return global_batch // jax.process_count()


def to_global(local_batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Assembles each process's rows into global arrays sharded along the batch axis."""
    return {k: jax.make_array_from_process_local_data(sharding, np.asarray(v)) for k, v in local_batch.items()}


def maybe_initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None, auto: bool = False) -> None:
    """Starts JAX's multi-controller runtime when this is one process of several.

    Explicit flags (GPU clusters, local tests) give the coordinator; `auto` (launch.sh passes
    --distributed on Cloud TPU) lets `jax.distributed.initialize()` find the hosts itself (Cloud
    TPU metadata, SLURM, Open MPI, Kubernetes); without either, a single process does nothing.
    """
    if coordinator_address:
        if num_processes is None or process_id is None:
            raise UserError("--coordinator_address needs --num_processes and --process_id too")
        jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                                   process_id=process_id)
    elif auto:
        jax.distributed.initialize()


def is_main_process() -> bool:
    """Only process 0 writes logs, samples and reports."""
    return jax.process_index() == 0


def fetch(tree: Any) -> Any:
    """Brings arrays to the host as numpy: whole if this process holds all of it, else (replicated
    arrays in a multi-process run) this process's own copy."""
    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return np.asarray(x.addressable_shards[0].data)
        return np.asarray(jax.device_get(x))

    return jax.tree.map(get, tree)


def gather(x: jax.Array) -> np.ndarray:
    """A batch-sharded array as one host array on every process (an all-gather across processes)."""
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def from_host(array: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from host data that every process holds in full (e.g. the conditions to sample)."""
    array = np.asarray(array)
    return jax.make_array_from_callback(array.shape, sharding, lambda index: array[index])
