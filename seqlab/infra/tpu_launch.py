"""Run a launch.py command on every worker of a Cloud TPU VM (or pod slice).

  python launch.py --config=experiments/long_range.py --models=lstm,transformer \
      --tpu=seqlab-v4 --zone=us-central2-b --accelerator_type=v4-32 [--dry_run]

The sequence (each step one `gcloud` command, printed before it runs; --dry_run prints
them all and runs none):
  1. use the TPU VM if `describe` finds it, else create it (or a queued resource,
     which waits for capacity; we poll until it is ACTIVE);
  2. pack the code (git-tracked files, no .venv or runs/) and copy it to every worker
     (`tpu-vm scp --worker=all`);
  3. on every worker: unpack, make a venv, install requirements.txt and jax[tpu] at
     the same version (--notpu_install: unpack only, for an image that has the packages,
     and for the simulated pod in seqlab/infra/fake_pod.py);
  4. on every worker: the same launch.py command plus --distributed (jax.distributed
     finds the pod's coordinator from the TPU metadata), started under nohup so a
     dropped ssh connection does not stop the sweep;
  5. stream process 0's log (worker 0) until its run ends;
  6. copy the workdir back from worker 0 (process 0 writes results and figures).

A pod slice (v4-16 and up) has one host per 4 chips and no shared disk: checkpoints
need a workdir every worker sees, e.g. --workdir=gs://BUCKET/path (seqlab/storage.py).
"""
from __future__ import annotations

import dataclasses
import os
import shlex
import subprocess
import sys
import time

REMOTE_DIR = 'seqlab'                  # under the worker's home directory
ARCHIVE = '/tmp/seqlab-code.tar.gz'    # the code, packed locally
# Flags that configure the launch itself and are not passed to the workers.
LAUNCHER_FLAGS = ('tpu', 'zone', 'project', 'accelerator_type', 'runtime_version',
                  'queued_resource', 'dry_run', 'fetch_to', 'tpu_install')


@dataclasses.dataclass(frozen=True)
class TpuSpec:
  name: str                             # TPU VM (node) name
  zone: str                             # e.g. us-central2-b
  project: str | None = None            # gcloud project; None: gcloud's default
  accelerator_type: str = 'v4-8'        # e.g. v4-8 (one host), v4-32 (4 hosts)
  runtime_version: str = 'tpu-ubuntu2204-base'
  queued_resource: bool = False         # create through a queued resource
  dry_run: bool = False                 # print the gcloud commands, run nothing
  fetch_to: str = '.'                   # local folder the workdir is copied into
  install: bool = True                  # make a venv and pip install on every worker


def _common(spec: TpuSpec) -> list[str]:
  return [f'--zone={spec.zone}'] + ([f'--project={spec.project}'] if spec.project else [])


def describe_cmd(spec):
  return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'describe', spec.name, *_common(spec),
          '--format=value(state)']


def create_cmds(spec) -> list[list[str]]:
  if spec.queued_resource:
    return [['gcloud', 'compute', 'tpus', 'queued-resources', 'create', spec.name,
             f'--node-id={spec.name}', f'--accelerator-type={spec.accelerator_type}',
             f'--runtime-version={spec.runtime_version}', *_common(spec)]]
  return [['gcloud', 'compute', 'tpus', 'tpu-vm', 'create', spec.name,
           f'--accelerator-type={spec.accelerator_type}', f'--version={spec.runtime_version}',
           *_common(spec)]]


def queued_state_cmd(spec):
  return ['gcloud', 'compute', 'tpus', 'queued-resources', 'describe', spec.name,
          *_common(spec), '--format=value(state.state)']


def pack_cmd(root: str) -> list[str]:
  # Tracked and untracked-but-not-ignored files: the code, never .venv or runs/.
  return ['bash', '-c', f'cd {shlex.quote(root)} && git ls-files -co --exclude-standard -z '
          f'| xargs -0 tar czf {ARCHIVE}']


def ssh_cmd(spec, command: str, worker: str = 'all') -> list[str]:
  return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', spec.name, *_common(spec),
          f'--worker={worker}', f'--command={command}']


def scp_cmd(spec, src: str, dst: str, worker: str = 'all', recurse: bool = False):
  return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp', *(['--recurse'] if recurse else []),
          src, dst, *_common(spec), f'--worker={worker}']


def jax_version(root: str) -> str:
  with open(os.path.join(root, 'requirements.txt')) as f:
    for line in f:
      if line.startswith('jax=='):
        return line.strip().split('==')[1]
  raise ValueError('requirements.txt pins no jax==VERSION; jax[tpu] must match it')


def remote_launch_args(argv: list[str]) -> list[str]:
  """launch.py's arguments minus the launcher's own flags, plus --distributed."""
  keep = []
  for a in argv:
    name = a[2:].split('=', 1)[0] if a.startswith('--') else ''
    base = name[2:] if name.startswith('no') and name[2:] in LAUNCHER_FLAGS else name
    if base not in LAUNCHER_FLAGS:
      keep.append(a)
  return keep + ['--distributed']


def plan(spec: TpuSpec, argv: list[str], workdir: str, root: str) -> list[tuple[str, list[str]]]:
  """(what, command) for steps 2-6; steps 1 (describe/create) depend on the answer."""
  d = REMOTE_DIR
  unpack = f'mkdir -p ~/{d} && tar xzf ~/{os.path.basename(ARCHIVE)} -C ~/{d}'
  install = (f' && cd ~/{d} && python3 -m venv .venv && .venv/bin/pip install -q -r '
             f'requirements.txt "jax[tpu]=={jax_version(root)}"') if spec.install else ''
  args = ' '.join(shlex.quote(a) for a in ['.venv/bin/python', 'launch.py',
                                           *remote_launch_args(argv)])
  inner = f'{args} & echo $! > launch.pid; wait $!; echo $? > launch.rc'
  run = (f'cd ~/{d} && rm -f launch.rc launch.pid && '
         f'(nohup bash -c {shlex.quote(inner)} > launch.log 2>&1 &) && echo started on $(hostname)')
  # Worker 0 runs process 0 (the writer); tail --pid ends the stream when the run ends.
  stream = (f'cd ~/{d} && while [ ! -e launch.pid ]; do sleep 1; done; '
            f'tail -n +1 -f launch.log --pid=$(cat launch.pid); while [ ! -e launch.rc ]; do sleep 1; done; '
            f'exit $(cat launch.rc 2>/dev/null || echo 1)')
  steps = [('pack the code', pack_cmd(root)),
           ('copy it to every worker', scp_cmd(spec, ARCHIVE, f'{spec.name}:~/', 'all')),
           ('unpack and install on every worker' if spec.install else 'unpack on every worker',
            ssh_cmd(spec, unpack + install)),
           ('start the run on every worker', ssh_cmd(spec, run)),
           ("stream process 0's log", ssh_cmd(spec, stream, worker='0'))]
  if workdir.startswith('gs://'):
    steps.append(('results are in the bucket', ['gcloud', 'storage', 'ls', workdir] + _common(spec)[1:]))
  else:
    remote = workdir if os.path.isabs(workdir) else f'~/{d}/{workdir}'
    steps.append(('fetch the workdir from worker 0',
                  scp_cmd(spec, f'{spec.name}:{remote}', spec.fetch_to, '0', recurse=True)))
  return steps


def show(cmd: list[str]) -> str:
  return ' '.join(shlex.quote(c) for c in cmd)


def main(spec: TpuSpec, argv: list[str], workdir: str, root: str, *,
         runner=subprocess.run, out=sys.stdout) -> int:
  """Runs (or, with dry_run, prints) the whole sequence; returns the exit status."""
  def say(what, cmd):
    print(f'# {what}\n{show(cmd)}', file=out, flush=True)

  steps = plan(spec, argv, workdir, root)
  if spec.dry_run:
    say('use the TPU VM if it exists', describe_cmd(spec))
    for c in create_cmds(spec):
      say('... else create it', c)
    if spec.queued_resource:
      say('... and wait until the queued resource is ACTIVE (polled every 30 s)',
          queued_state_cmd(spec))
    for what, cmd in steps:
      say(what, cmd)
    return 0

  say('use the TPU VM if it exists', describe_cmd(spec))
  if runner(describe_cmd(spec), capture_output=True, text=True).returncode != 0:
    for c in create_cmds(spec):
      say('create it', c)
      if runner(c).returncode != 0:
        print(f'error: could not create TPU {spec.name} ({spec.accelerator_type}) in '
              f'{spec.zone}; see gcloud\'s message above', file=sys.stderr)
        return 1
    while spec.queued_resource:
      state = runner(queued_state_cmd(spec), capture_output=True, text=True).stdout.strip()
      print(f'queued resource {spec.name}: {state or "?"}', file=out, flush=True)
      if state == 'ACTIVE':
        break
      if state in ('FAILED', 'SUSPENDED'):
        print(f'error: queued resource {spec.name} is {state}', file=sys.stderr)
        return 1
      time.sleep(30)
  for what, cmd in steps:
    say(what, cmd)
    rc = runner(cmd).returncode
    if rc != 0:
      hint = ''
      if what == "stream process 0's log":  # the run itself stopped (or was stopped)
        hint = (f' (the run on worker 0; its log is ~/{REMOTE_DIR}/launch.log there); finished '
                f'points and checkpoints are kept in the workdir: run the same command to resume')
      print(f'error: step "{what}" failed with exit status {rc}{hint}', file=sys.stderr)
      return 1
  return 0
