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
    --process_id=I` on each host (I = 0..N-1; process 0 runs the coordinator on PORT
    and a check-in on PORT+1, so both must be reachable).

A host that never comes up must not hang the others for ever: initialize waits at
most `timeout_s` seconds and then raises; `connect` turns that into one line and
exit status 1.
"""
from __future__ import annotations

import dataclasses
import socket
import sys
import time

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
    # jax's own wait for a missing process ends in a C++ abort (a page of stack trace),
    # not an exception: meet on PORT+1 first, so a missing host is one clear line.
    rendezvous(spec)
    kwargs.update(coordinator_address=spec.coordinator_address,
                  num_processes=spec.num_processes, process_id=spec.process_id)
  try:
    jax.distributed.initialize(**kwargs)
  except Exception as e:  # XlaRuntimeError / RuntimeError / ValueError depending on the cause
    why = ' '.join(str(e).split())[:300] or type(e).__name__
    where = (f'coordinator {spec.coordinator_address}, {spec.num_processes} processes, '
             f'this is process {spec.process_id}' if spec.explicit else 'auto-detected cluster')
    raise DistributedError(
        f'jax.distributed.initialize failed ({where}) within {spec.timeout_s}s: {why}. '
        f'Check that every host runs the same command and can reach the coordinator') from None
  return True


def rendezvous(spec: ClusterSpec) -> None:
  """Every process checks in with process 0 on the coordinator's PORT+1 (plain TCP)
  within spec.timeout_s; process 0 answers 'go' once all have. Raises
  DistributedError naming the processes that did not come."""
  host, _, port = spec.coordinator_address.rpartition(':')
  address = (host, int(port) + 1)
  deadline = time.monotonic() + spec.timeout_s
  n, me = spec.num_processes, spec.process_id
  if n == 1:
    return
  if me == 0:
    server = socket.create_server(('', address[1]), reuse_port=False)
    joined = {}
    try:
      while len(joined) < n - 1:
        server.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
          conn, _ = server.accept()
        except (socket.timeout, TimeoutError):
          missing = sorted(set(range(1, n)) - set(joined))
          raise DistributedError(
              f'process(es) {", ".join(map(str, missing))} of {n} did not join the coordinator '
              f'{spec.coordinator_address} within {spec.timeout_s}s (--distributed_timeout); '
              f'start the same command on every host with its own --process_id') from None
        conn.settimeout(5)
        try:
          joined[int(conn.recv(16).decode() or -1)] = conn
        except (OSError, ValueError):
          conn.close()
      for conn in joined.values():
        conn.sendall(b'go')
        conn.close()
    finally:
      server.close()
    return
  while True:
    try:
      with socket.create_connection(address, timeout=2) as conn:
        conn.sendall(str(me).encode())
        conn.settimeout(max(deadline - time.monotonic(), 0.01))
        if conn.recv(2) == b'go':
          return
    except OSError:
      pass
    if time.monotonic() > deadline:
      raise DistributedError(
          f'process {me} of {n} could not meet process 0 at {host}:{address[1]} '
          f'(--coordinator_address port + 1) within {spec.timeout_s}s (--distributed_timeout); '
          f'is process 0 running and the address reachable?')
    time.sleep(0.2)


def connect(spec: ClusterSpec) -> bool:
  """initialize() for launch.py: a failure is one line on stderr and exit status 1."""
  try:
    return initialize(spec)
  except DistributedError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(1)


def describe() -> str:
  """One line: processes, devices and platform, printed by process 0 at start-up."""
  return (f'process {jax.process_index()} of {jax.process_count()}; '
          f'{jax.local_device_count()} local / {jax.device_count()} global '
          f'{jax.devices()[0].platform} devices')
