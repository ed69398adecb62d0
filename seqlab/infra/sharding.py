"""The device mesh and batch placement for data-parallel training.

One mesh axis, 'data': the batch is split over it and every parameter is replicated
(data parallelism). Tensor parallelism would add a 'model' axis that parameters'
PartitionSpecs name; nothing in seqlab needs one yet. Axis types are Auto on purpose: `jax.make_mesh` defaults to Explicit, which
would make every intermediate's sharding part of its type; data parallelism needs
only the inputs' and the state's shardings, stated once at the jit (train.compile_steps).

Multi-host (seqlab/infra/distributed.py): the mesh spans every process's devices, and each
process supplies only its own rows of a batch (place_batch). The synthetic tasks make
the global batch from (seed, split, step) with one numpy generator, and that is
deliberate: a row's values depend on the whole draw, so making only some rows would
change the data with the process count and break the equivalence of a 1-host and an
N-host run (and exact resume across a different host count). Drawing a global batch
costs microseconds to milliseconds on the host, far below a step; each process then
keeps only `process_slice` of it. A data-backed task with large examples should read
rows by index instead: `process_slice(global_batch_size)` says which.
"""
from __future__ import annotations

import jax
import numpy as np
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P


def make_mesh(num_devices: int | None = None) -> jax.sharding.Mesh:
  """A ('data',) mesh over the first num_devices devices (default: all, of all
  processes)."""
  n = num_devices or jax.device_count()
  return jax.make_mesh((n,), ('data',), axis_types=(AxisType.Auto,), devices=jax.devices()[:n])


def replicated(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def data_sharded(mesh) -> NamedSharding:
  """Leading (batch) axis split over 'data'; the rest replicated."""
  return NamedSharding(mesh, P('data'))


def check_batch_size(batch_size: int, mesh) -> None:
  n = mesh.shape['data']
  if batch_size % n:
    raise ValueError(f'batch_size={batch_size} is not divisible by the {n} devices of the '
                     f'data axis; use a multiple of {n}')


def process_slice(global_batch_size: int) -> slice:
  """The rows of the global batch this process feeds (contiguous, by process index)."""
  per = global_batch_size // jax.process_count()
  i = jax.process_index()
  return slice(i * per, (i + 1) * per)


def place_batch(global_batch: dict, mesh) -> dict:
  """Global numpy batch -> sharded jax arrays; each process supplies only its rows."""
  sharding = data_sharded(mesh)
  out = {}
  for k, v in global_batch.items():
    rows = process_slice(v.shape[0])
    out[k] = jax.make_array_from_process_local_data(sharding, np.asarray(v[rows]), v.shape)
  return out
