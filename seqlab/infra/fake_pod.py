"""A simulated Cloud TPU pod on this machine: a fake `gcloud` for seqlab/infra/tpu_launch.py.

  mkdir -p /tmp/fake-gcloud
  printf '#!/bin/sh\\nexec env PYTHONPATH=%s %s -m seqlab.infra.fake_pod "$@"\\n' \\
      "$PWD" "$PWD/.venv/bin/python" > /tmp/fake-gcloud/gcloud && chmod +x /tmp/fake-gcloud/gcloud
  export PATH=/tmp/fake-gcloud:$PATH SEQLAB_FAKE_POD_ROOT=/tmp/fake-pod
  .venv/bin/python launch.py ... --tpu=pod --zone=z --accelerator_type=v4-16 --notpu_install \\
      --workdir=/tmp/pod-run          # absolute: the "shared disk" every worker sees

It implements only what tpu_launch calls, on the state in $SEQLAB_FAKE_POD_ROOT:
  <root>/<NAME>/pod.json       accelerator type, host count, coordinator port
  <root>/<NAME>/worker-<i>/    worker i's home directory

  compute tpus tpu-vm describe NAME --format=value(state)   READY, or exit 1 if no such pod
  compute tpus tpu-vm create NAME --accelerator-type=T      one worker per host (v4-8: 1,
                                                            v4-16: 2, v4-32: 4)
  compute tpus queued-resources create|describe NAME        created at once; ACTIVE
  compute tpus tpu-vm scp [--recurse] SRC DST --worker=W     local -> every worker's home, or
                                                            NAME:PATH -> local (fetching)
  compute tpus tpu-vm ssh NAME --worker=W --command=CMD      `bash -c CMD` in each worker's
                                                            home, all at once; waits for all
  compute tpus tpu-vm delete NAME
  storage ls gs://BUCKET/PATH                               through gcsfs (or its emulator)

What is simulated and what is not:
  - a worker is a folder and a process on this machine, not a host: `~` is its home, but
    an absolute path is this machine's, so an absolute --workdir is the shared disk a pod
    would need (a gs:// workdir works too);
  - the pod's image has the packages: `pip install` is not simulated, so run with
    --notpu_install; each worker's ~/seqlab/.venv links to this interpreter's environment
    (sys.prefix), and the code it runs is the copy tpu_launch unpacked in its home;
  - every worker runs on the CPU (JAX_PLATFORMS=cpu, one device each, XLA_FLAGS=''), in a
    session of its own; it inherits the caller's environment (a bucket's credentials or
    emulator included) less PYTHONPATH and VIRTUAL_ENV, so it runs its own copy of the code;
  - jax.distributed's auto-detection (launch.py --distributed) reads a real pod's worker id
    and coordinator from the TPU metadata server, which this machine does not have. So each
    worker gets the environment of a cluster jax does auto-detect without one, Slurm's
    (jax/_src/clusters/slurm_cluster.py): SLURM_JOB_ID (jax derives the coordinator's port
    from it: JOB_ID % 4096 + 61440), SLURM_STEP_NODELIST=localhost, SLURM_NTASKS=hosts,
    SLURM_PROCID=i, SLURM_LOCALID=0 (one process per host), and TPU_WORKER_ID=i as on a pod.
    The port is chosen free when the pod is created and kept, so the same command run
    again finds the same coordinator;
  - a Ctrl-C on `ssh` hangs up its workers (SIGHUP), as a dropped connection would: a
    command started under nohup keeps running.
"""
from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys

PORT_BASE = 65536 - 4096       # jax's Slurm port: SLURM_JOB_ID % 4096 + PORT_BASE
MAX_HOSTS = 8                  # one process per host, all on this machine
# TPU generation -> TensorCores (the N of v4-N) per host; v5e/v6e count chips, 4 per host
# above a single 8-chip host.
CORES_PER_HOST = {'v2': 8, 'v3': 8, 'v4': 8, 'v5p': 8, 'v5litepod': 4, 'v6e': 4}


class GcloudError(Exception):
  """One line for stderr, as gcloud's `ERROR: (gcloud...)`; exit status 1."""


def root() -> str:
  path = os.environ.get('SEQLAB_FAKE_POD_ROOT')
  if not path:
    raise GcloudError('SEQLAB_FAKE_POD_ROOT is not set: set it to a folder for the simulated '
                      'pods, e.g. export SEQLAB_FAKE_POD_ROOT=/tmp/fake-pod')
  return os.path.abspath(path)


def hosts_of(accelerator_type: str) -> int:
  """v4-16 -> 2: the number of TPU VM hosts (workers) of a slice."""
  gen, _, n = accelerator_type.rpartition('-')
  if gen not in CORES_PER_HOST or not n.isdigit():
    raise GcloudError(f'--accelerator-type={accelerator_type!r}: the fake pod knows '
                      f'{", ".join(g + "-N" for g in CORES_PER_HOST)} (e.g. v4-8, v4-16)')
  n = int(n)
  hosts = 1 if n <= 8 else n // CORES_PER_HOST[gen]
  if hosts > MAX_HOSTS:
    raise GcloudError(f'--accelerator-type={accelerator_type} has {hosts} hosts; the fake pod '
                      f'runs one process per host on this machine, at most {MAX_HOSTS}')
  return hosts


def pod_dir(name: str) -> str:
  return os.path.join(root(), name)


def load(name: str) -> dict | None:
  try:
    with open(os.path.join(pod_dir(name), 'pod.json')) as f:
      return json.load(f)
  except FileNotFoundError:
    return None


def need(name: str) -> dict:
  pod = load(name)
  if pod is None:
    raise GcloudError(f'NOT_FOUND: TPU {name!r} does not exist (under '
                      f'SEQLAB_FAKE_POD_ROOT={root()}); create it first')
  return pod


def home(name: str, worker: int) -> str:
  return os.path.join(pod_dir(name), f'worker-{worker}')


def free_port() -> int:
  """A free port in jax's Slurm range (above Linux's ephemeral ports, 32768-60999)."""
  for offset in range(4096):
    port = PORT_BASE + (os.getpid() + offset) % 4096
    with socket.socket() as s:
      try:
        s.bind(('localhost', port))
        return port
      except OSError:
        continue
  raise GcloudError(f'no free port in {PORT_BASE}..65535 for the pod\'s coordinator')


def create(name: str, accelerator_type: str, zone: str) -> None:
  if load(name) is not None:
    raise GcloudError(f'ALREADY_EXISTS: TPU {name!r} exists; delete it first')
  hosts = hosts_of(accelerator_type)
  pod = dict(name=name, zone=zone, accelerator_type=accelerator_type, hosts=hosts,
             port=free_port())
  for i in range(hosts):
    os.makedirs(os.path.join(home(name, i), 'seqlab'))
    # The image has the packages: the venv the unpacked code runs with is this one.
    os.symlink(sys.prefix, os.path.join(home(name, i), 'seqlab', '.venv'))
  with open(os.path.join(pod_dir(name), 'pod.json'), 'w') as f:
    json.dump(pod, f, indent=1)
  print(f'Created TPU {name} ({accelerator_type}, {hosts} worker(s)) under {pod_dir(name)}',
        file=sys.stderr)


def workers(pod: dict, which: str) -> list[int]:
  if which == 'all':
    return list(range(pod['hosts']))
  ids = [int(w) for w in which.split(',') if w.isdigit()]
  if not ids or len(ids) != len(which.split(',')) or max(ids) >= pod['hosts']:
    raise GcloudError(f'--worker={which!r}: give all or worker ids 0..{pod["hosts"] - 1}')
  return ids


def worker_env(pod: dict, i: int) -> dict:
  """What worker i of the pod sees: its home, its id, and the coordinator (see above)."""
  env = {k: v for k, v in os.environ.items()
         if k not in ('PYTHONPATH', 'VIRTUAL_ENV', 'PWD', 'OLDPWD')
         and not k.startswith(('SLURM_', 'TPU_', 'JAX_', 'OMPI_'))}
  env.update(HOME=home(pod['name'], i), TPU_WORKER_ID=str(i), JAX_PLATFORMS='cpu',
             XLA_FLAGS='', SLURM_JOB_ID=str(pod['port'] - PORT_BASE + 4096),
             SLURM_STEP_NODELIST='localhost', SLURM_NTASKS=str(pod['hosts']),
             SLURM_PROCID=str(i), SLURM_LOCALID='0')
  return env


def ssh(pod: dict, which: str, command: str) -> int:
  procs = [subprocess.Popen(['bash', '-c', command], cwd=home(pod['name'], i),
                            env=worker_env(pod, i), start_new_session=True)
           for i in workers(pod, which)]
  try:
    codes = [p.wait() for p in procs]
  except KeyboardInterrupt:  # the connection drops: hang up every worker's shell
    for p in procs:
      try:
        os.killpg(p.pid, signal.SIGHUP)
      except ProcessLookupError:
        pass
    return 130
  return next((c for c in codes if c), 0)


def remote(path: str) -> tuple[str, str] | None:
  """'NAME:PATH' -> (NAME, PATH); a local path -> None. PATH is read as the worker's shell
  reads it (scp's remote path is quoted for it): one word, quotes removed."""
  m = re.fullmatch(r'([a-z][-a-z0-9]*):(.*)', path, re.S)
  if not m:
    return None
  words = shlex.split(m.group(2)) if m.group(2) else ['']
  if len(words) != 1:
    raise GcloudError(f'scp: remote path {m.group(2)!r} is {len(words)} words to the '
                      f'worker\'s shell; quote it')
  return m.group(1), words[0]


def on_worker(name: str, worker: int, path: str) -> str:
  """A worker's path on this machine: `~` and relative paths are under its home."""
  if path == '~' or path.startswith('~/'):
    path = path[2:]
  return os.path.join(home(name, worker), path)   # an absolute path stays as it is


def copy(src: str, dst: str, recurse: bool) -> None:
  """scp's rules: into DST if it is a folder, else as DST."""
  src = os.path.normpath(src)
  if not os.path.exists(src):
    raise GcloudError(f'scp: {src}: No such file or directory')
  if os.path.isdir(dst):
    dst = os.path.join(dst, os.path.basename(src))
  if os.path.exists(dst) and os.path.samefile(src, dst):   # an absolute path: the shared disk
    return
  if os.path.isdir(src):
    if not recurse:
      raise GcloudError(f'scp: {src}: not a regular file (copy a folder with --recurse)')
    shutil.copytree(src, dst, symlinks=True, dirs_exist_ok=True)
  else:
    shutil.copy2(src, dst)


def scp(src: str, dst: str, which: str, recurse: bool) -> None:
  if remote(dst) and not remote(src):      # to every chosen worker
    name, path = remote(dst)
    pod = need(name)
    for i in workers(pod, which):
      copy(src, on_worker(name, i, path), recurse)
  elif remote(src) and not remote(dst):    # back from the workers
    name, path = remote(src)
    pod = need(name)
    for i in workers(pod, which):
      copy(on_worker(name, i, path), dst, recurse)
  else:
    raise GcloudError(f'scp {src} {dst}: exactly one of the two must be NAME:PATH')


def parse(args: list[str]) -> tuple[list[str], dict[str, str]]:
  words, opts = [], {}
  for a in args:
    if a.startswith('--'):
      key, has_value, value = a[2:].partition('=')
      opts[key] = value if has_value else 'true'
    else:
      words.append(a)
  return words, opts


def storage_ls(url: str) -> None:
  """`gcloud storage ls URL` (tpu_launch's last step for a gs:// workdir), through gcsfs:
  the real bucket, or a local emulator named by STORAGE_EMULATOR_HOST."""
  from seqlab.infra import storage
  if not storage.isdir(url):
    raise GcloudError(f'One or more URLs matched no objects: {url}')
  for name in storage.listdir(url):
    print(storage.join(url, name))


def gcloud(args: list[str]) -> int:
  words, opts = parse(args)
  if words[:2] == ['storage', 'ls'] and len(words) == 3:
    storage_ls(words[2])
    return 0
  if words[:2] != ['compute', 'tpus'] or len(words) < 5:
    raise not_simulated(args)
  group, verb, rest = words[2], words[3], words[4:]
  if 'zone' not in opts:
    raise GcloudError('--zone is required')
  if (group, verb) == ('tpu-vm', 'describe'):
    need(rest[0])
    print('READY')
  elif (group, verb) == ('tpu-vm', 'create'):
    create(rest[0], opts.get('accelerator-type', 'v2-8'), opts['zone'])
  elif (group, verb) == ('queued-resources', 'create'):
    create(opts.get('node-id', rest[0]), opts.get('accelerator-type', 'v2-8'), opts['zone'])
  elif (group, verb) == ('queued-resources', 'describe'):
    need(rest[0])
    print('ACTIVE')
  elif (group, verb) == ('tpu-vm', 'delete'):
    need(rest[0])
    shutil.rmtree(pod_dir(rest[0]))
  elif (group, verb) == ('tpu-vm', 'scp') and len(rest) == 2:
    scp(rest[0], rest[1], opts.get('worker', '0'), 'recurse' in opts)
  elif (group, verb) == ('tpu-vm', 'ssh') and 'command' in opts:
    return ssh(need(rest[0]), opts.get('worker', '0'), opts['command'])
  else:
    raise not_simulated(args)
  return 0


def not_simulated(args: list[str]) -> GcloudError:
  return GcloudError(f'gcloud {" ".join(args)}: not simulated by the fake pod; it knows '
                     f'compute tpus tpu-vm describe|create|delete|scp|ssh --command, '
                     f'compute tpus queued-resources create|describe, and storage ls')


def main(args: list[str]) -> int:
  try:
    return gcloud(args)
  except GcloudError as e:
    print(f'ERROR: (fake gcloud) {e}', file=sys.stderr)
    return 1


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
