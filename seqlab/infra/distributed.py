"""Multi-host start-up: connect the processes of a pod or cluster with jax.distributed.

JAX is multi-controller: every host runs the same `launch.py` command, and
`jax.distributed.initialize` connects them before any array is made. Afterwards
`jax.devices()` lists every device of every host, the mesh in seqlab.sharding spans
them all, each process feeds its own rows of the batch (sharding.place_batch),
process 0 alone writes results files (writer.is_writer), and every process takes
part in each checkpoint save and restore (orbax coordinates them).

Three ways to start:
  - one host (CPU, one GPU, a multi-GPU box, a single-host TPU VM such as v4-8):
    nothing to do, `initialize` is not called;
  - a TPU VM pod slice (`launch.py --distributed`, which tpu_launch passes): JAX finds the
    coordinator, the process count and this process's id from the TPU metadata;
  - any other cluster: `--coordinator_address=HOST:PORT --num_processes=N
    --process_id=I` on each host (I = 0..N-1; process 0 runs jax's coordination
    service on PORT, the one port that must be reachable).

A host that never comes up must not hang the others for ever: jax's coordination
service waits at most `timeout_s` seconds for every process to register, then this
process raises; `connect` turns that into one line and exit status 1.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import sys

import jax


class DistributedError(RuntimeError):
  """The processes could not be connected (a host missing, a wrong address)."""


@dataclasses.dataclass(frozen=True)
class ClusterSpec:
  coordinator_address: str | None = None   # 'host:port' of process 0; None: auto-detect
  num_processes: int | None = None         # processes in the run (one per host)
  process_id: int | None = None            # this process, 0 .. num_processes-1
  timeout_s: int = 300                     # how long to wait for every process to join
  auto: bool = False                       # auto-detect on a TPU VM pod (no address given)

  @property
  def explicit(self) -> bool:
    return self.coordinator_address is not None

  @property
  def wanted(self) -> bool:
    return self.explicit or self.auto


def validate(spec: ClusterSpec) -> None:
  """Raises ValueError naming the bad value when the flags are inconsistent."""
  given = {'coordinator_address': spec.coordinator_address,
           'num_processes': spec.num_processes, 'process_id': spec.process_id}
  if spec.explicit or spec.num_processes is not None or spec.process_id is not None:
    missing = [k for k, v in given.items() if v is None]
    if missing:
      raise ValueError(f'--{", --".join(missing)} missing: an explicit cluster needs all of '
                       f'--coordinator_address=HOST:PORT, --num_processes=N, --process_id=I')
    host, _, port = spec.coordinator_address.rpartition(':')
    if not host or not port.isdigit():
      raise ValueError(f'--coordinator_address={spec.coordinator_address!r} must be HOST:PORT, '
                       f'e.g. 10.0.0.2:8476')
    if spec.num_processes < 1:
      raise ValueError(f'--num_processes={spec.num_processes} must be >= 1')
    if not 0 <= spec.process_id < spec.num_processes:
      raise ValueError(f'--process_id={spec.process_id} must be in 0..{spec.num_processes - 1} '
                       f'(--num_processes={spec.num_processes})')
  if spec.timeout_s < 1:
    raise ValueError(f'--distributed_timeout={spec.timeout_s} must be >= 1 second')


def initialize(spec: ClusterSpec) -> bool:
  """Connects this process to the others; returns True when it did (False: one host).
  Raises DistributedError after spec.timeout_s when some process does not join."""
  if not spec.wanted:
    return False
  validate(spec)
  kwargs = dict(initialization_timeout=int(spec.timeout_s),
                # A host that dies mid-run is noticed within this many seconds by the
                # others (which then exit with an error instead of waiting in a collective).
                heartbeat_timeout_seconds=max(10, min(100, int(spec.timeout_s))))
  if spec.explicit:
    kwargs.update(coordinator_address=spec.coordinator_address,
                  num_processes=spec.num_processes, process_id=spec.process_id)
  elif (found := _auto_detected(spec.timeout_s)) is not None:
    kwargs.update(zip(('coordinator_address', 'num_processes', 'process_id'), found))
  if 'coordinator_address' in kwargs and not os.environ.get('JAX_COORDINATOR_BIND_ADDRESS'):
    # Process 0's coordination service listens on its own (internal) address only, not
    # on every interface (jax's default, [::]:PORT): only the pod's hosts must reach it.
    kwargs['coordinator_bind_address'] = kwargs['coordinator_address']
  try:
    with _errors_raise():
      jax.distributed.initialize(**kwargs)
  except Exception as e:  # XlaRuntimeError / RuntimeError / ValueError depending on the cause
    raise DistributedError(_why(spec, e)) from None
  return True


def _auto_detected(timeout_s: int) -> tuple[str, int, int] | None:
  """(coordinator address, process count, this process's id) as jax.distributed detects
  them (a TPU pod's metadata, Slurm, ...), or None where it finds none (then jax's own
  detection runs in initialize, binding to every interface)."""
  try:
    from jax._src import clusters
    found = clusters.ClusterEnv.auto_detect_unset_distributed_params(
        None, None, None, None, None, timeout_s)
  except Exception:   # another jax layout, or no cluster: initialize's own detection
    return None        # runs (and a failure there is one line, below)
  return tuple(found[:3]) if None not in found[:3] else None


def _why(spec: ClusterSpec, e: Exception) -> str:
  """One line: who did not join, from where this process stands."""
  if not spec.explicit:
    why = ' '.join(str(e).split())[:300] or type(e).__name__
    return (f'jax.distributed.initialize failed (auto-detected cluster) within '
            f'{spec.timeout_s}s: {why}. Check that every host runs the same command')
  n, me = spec.num_processes, spec.process_id
  if me == 0:
    others = ', '.join(map(str, range(1, n))) if n <= 9 else f'1..{n - 1}'
    who = f'process(es) {others} of {n}' if n == 2 else f'some of process(es) {others} of {n}'
    return (f'{who} did not join the coordinator {spec.coordinator_address} within '
            f'{spec.timeout_s}s (--distributed_timeout); start the same command on every host '
            f'with its own --process_id')
  return (f'process {me} of {n} could not join process 0 at {spec.coordinator_address} within '
          f'{spec.timeout_s}s (--distributed_timeout); is process 0 running, every other process '
          f'started and the address reachable?')


@contextlib.contextmanager
def _errors_raise():
  """jax's coordination client aborts the whole process (a C++ check failure and a page of
  stack) when registration times out, unless it is given a callback for that error: give
  it one, so connect() raises and the error can be one line."""
  try:
    from jax._src import distributed as jax_distributed
    lib = jax_distributed._jax
    make_client = lib.get_distributed_runtime_client
  except (ImportError, AttributeError):  # another jax layout: its own behaviour
    yield
    return

  def client(*args, **kwargs):
    kwargs.setdefault('missed_heartbeat_callback', lambda *a: None)
    return make_client(*args, **kwargs)

  lib.get_distributed_runtime_client = client
  try:
    yield
  finally:
    lib.get_distributed_runtime_client = make_client


def connect(spec: ClusterSpec) -> bool:
  """initialize() for launch.py: a failure is one line on stderr and exit status 1."""
  try:
    return initialize(spec)
  except DistributedError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    # Not sys.exit: jax's exit hook would shut the failed client down and log a page.
    os._exit(1)


def describe() -> str:
  """One line: processes, devices and platform, printed by process 0 at start-up."""
  return (f'process {jax.process_index()} of {jax.process_count()}; '
          f'{jax.local_device_count()} local / {jax.device_count()} global '
          f'{jax.devices()[0].platform} devices')
