"""Run a launch.py command on every worker of a Cloud TPU VM (or pod slice).

  python launch.py --config=experiments/long_range.py --models=lstm,transformer \
      --tpu=seqlab-v4 --zone=us-central2-b --accelerator_type=v4-32 [--dry_run]

The sequence (each step one `gcloud` command, printed before it runs; --dry_run prints
them all and runs none):
  1. use the TPU VM if `describe` finds it, else create it (or a queued resource,
     which waits for capacity; we poll until it is ACTIVE);
  2. pack the code: the git-tracked files only (plus --ship_extra paths, opted into by
     name; a file named like a secret is refused), with one tar reading a NUL-separated
     list, into a private temporary archive (mkstemp, mode 0600, deleted afterwards);
     the archive's file count is checked against the list; copy it to every worker
     (`tpu-vm scp --worker=all`);
  3. on every worker: refuse if a run started there is still going, then unpack, make a
     venv, install requirements.txt and jax[tpu] at the same version (--notpu_install:
     unpack only, for an image that has the packages, and for the simulated pod in
     seqlab/infra/fake_pod.py);
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
import fnmatch
import os
import re
import shlex
import subprocess
import sys
import tarfile
import tempfile
import time

REMOTE_DIR = 'seqlab'                  # under the worker's home directory
REMOTE_ARCHIVE = 'seqlab-code.tar.gz'  # the archive, in the worker's home until unpacked
# Flags that configure the launch itself and are not passed to the workers.
LAUNCHER_FLAGS = ('tpu', 'zone', 'project', 'accelerator_type', 'runtime_version',
                  'queued_resource', 'dry_run', 'fetch_to', 'tpu_install', 'ship_extra')
BOOL_LAUNCHER_FLAGS = ('queued_resource', 'dry_run', 'tpu_install')   # --x / --nox, no value
# Names never shipped, even when --ship_extra names them (credentials, keys, tokens).
SECRET_NAMES = ('*service-account*.json', '*service_account*.json', '*credentials*.json',
                'client_secret*.json', '*.pem', '*.key', '*.p12', '*.pfx', '.env', '*.env',
                '.netrc', '.pypirc', 'id_rsa*', 'id_ecdsa*', 'id_ed25519*', '*.keytab')


class LaunchError(Exception):
  """The launch cannot go on (what to ship, or what was shipped, is wrong)."""


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
  extra: tuple[str, ...] = ()           # untracked paths (in the checkout) to ship too


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


def _git_files(root: str, *args: str) -> list[str]:
  try:
    r = subprocess.run(['git', 'ls-files', '-z', *args], cwd=root, capture_output=True,
                       check=True)
  except (OSError, subprocess.CalledProcessError) as e:
    why = getattr(e, 'stderr', b'') or str(e).encode()
    raise LaunchError(f'{root} is not a git checkout the launcher can list ('
                      f'{why.decode(errors="replace").strip()}); it ships the tracked files '
                      f'only') from None
  return [f for f in r.stdout.decode().split('\0') if f]


def secret_pattern(path: str) -> str | None:
  name = os.path.basename(path)
  return next((p for p in SECRET_NAMES if fnmatch.fnmatch(name.lower(), p)), None)


def code_files(root: str, extra=()) -> list[str]:
  """What is shipped, relative to root: the tracked files that exist (a file deleted
  and not yet committed is not), plus each --ship_extra path (a file, or a folder's
  files) inside root. Never a file named like a secret that is not tracked."""
  deleted = set(_git_files(root, '--deleted'))
  files = [f for f in _git_files(root, '--cached')
           if f not in deleted and (os.path.isfile(os.path.join(root, f))
                                    or os.path.islink(os.path.join(root, f)))]
  real_root = os.path.realpath(root)
  for e in extra:
    path = os.path.realpath(os.path.join(root, e))
    if os.path.commonpath([path, real_root]) != real_root:
      raise LaunchError(f'--ship_extra={e}: {path} is outside the checkout {real_root}; '
                        f'give paths inside it')
    if not os.path.exists(path):
      raise LaunchError(f'--ship_extra={e}: no such file or folder in {real_root}')
    found = ([path] if os.path.isfile(path) else
             [os.path.join(d, f) for d, _, fs in os.walk(path) for f in fs])
    for f in sorted(found):
      rel = os.path.relpath(f, real_root)
      if (pat := secret_pattern(rel)) and rel not in files:
        raise LaunchError(f'--ship_extra={e}: {rel} is named like a secret ({pat!r}); it '
                          f'is never shipped: move it out of {e}, or give the workers its '
                          f'contents another way (a metadata key, a secret manager)')
      files.append(rel)
  return sorted(set(files))


def pack_cmd(archive: str) -> list[str]:
  """One tar, reading the NUL-separated file list on stdin (never xargs: past its
  buffer xargs runs tar again, and each run overwrites the archive)."""
  return ['tar', '--null', '--no-recursion', '-T', '-', '-czf', archive]


def check_archive(archive: str, files: list[str]) -> None:
  with tarfile.open(archive) as t:
    got = [m.name for m in t.getmembers() if not m.isdir()]
  if sorted(got) != sorted(files):
    missing = sorted(set(files) - set(got))
    raise LaunchError(f'the archive holds {len(got)} files, not the {len(files)} listed'
                      + (f' (missing {", ".join(missing[:3])}'
                         f'{" ..." if len(missing) > 3 else ""})' if missing else '')
                      + '; nothing was copied to the workers')


def ssh_cmd(spec, command: str, worker: str = 'all') -> list[str]:
  return ['gcloud', 'compute', 'tpus', 'tpu-vm', 'ssh', spec.name, *_common(spec),
          f'--worker={worker}', f'--command={command}']


def remote_path(name: str, path: str) -> str:
  """NAME:PATH for scp, PATH quoted for the worker's shell (relative: under its home)."""
  return f'{name}:{shlex.quote(path)}'


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
  """launch.py's arguments minus the launcher's own flags, plus --distributed. Takes
  every form absl accepts: --tpu=pod, -tpu=pod, --tpu pod (the value is the next
  argument), --dry_run, --nodry_run; after a bare -- nothing is a flag."""
  keep, i = [], 0
  while i < len(argv):
    a = argv[i]
    if a == '--':
      keep.extend(argv[i:])
      break
    m = re.fullmatch(r'--?([A-Za-z_][\w.-]*)(=.*)?', a, re.S)
    name, has_value = (m.group(1), m.group(2) is not None) if m else ('', False)
    base = name[2:] if name.startswith('no') and name[2:] in BOOL_LAUNCHER_FLAGS else name
    if base in LAUNCHER_FLAGS:
      takes_next = not has_value and base == name and base not in BOOL_LAUNCHER_FLAGS
      i += 2 if takes_next else 1
      continue
    keep.append(a)
    i += 1
  return keep + ['--distributed']


def unpack_cmd(remote_dir: str = REMOTE_DIR) -> str:
  """On a worker: refuse while a run started there is still going (its launch.pid alive
  and no launch.rc yet), else unpack the archive over ~/seqlab and remove it."""
  d = remote_dir
  return (f'if [ -e ~/{d}/launch.pid ] && [ ! -e ~/{d}/launch.rc ] && '
          f'kill -0 "$(cat ~/{d}/launch.pid)" 2>/dev/null; then '
          f'echo "error: a run is still going on $(hostname) (pid $(cat ~/{d}/launch.pid), '
          f'log ~/{d}/launch.log); wait for it to end, or stop it, then launch again" >&2; '
          f'exit 3; fi; '
          f'mkdir -p ~/{d} && tar xzf ~/{REMOTE_ARCHIVE} -C ~/{d} && rm -f ~/{REMOTE_ARCHIVE}')


def plan(spec: TpuSpec, argv: list[str], workdir: str, root: str,
         archive: str = '$TMPDIR/seqlab-code-XXXXXXXX.tar.gz') -> list[tuple[str, list[str]]]:
  """(what, command) for steps 2-6; steps 1 (describe/create) depend on the answer.
  archive: the local archive (main makes it with mkstemp)."""
  d = REMOTE_DIR
  unpack = unpack_cmd(d)
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
  steps = [('pack the code', pack_cmd(archive)),
           ('copy it to every worker',
            scp_cmd(spec, archive, remote_path(spec.name, REMOTE_ARCHIVE), 'all')),
           ('unpack and install on every worker' if spec.install else 'unpack on every worker',
            ssh_cmd(spec, unpack + install)),
           ('start the run on every worker', ssh_cmd(spec, run)),
           ("stream process 0's log", ssh_cmd(spec, stream, worker='0'))]
  if workdir.startswith('gs://'):
    steps.append(('results are in the bucket', ['gcloud', 'storage', 'ls', workdir] + _common(spec)[1:]))
  else:
    remote = workdir if os.path.isabs(workdir) else f'{d}/{workdir}'   # relative: home's
    steps.append(('fetch the workdir from worker 0',
                  scp_cmd(spec, remote_path(spec.name, remote), spec.fetch_to, '0',
                          recurse=True)))
  return steps


def show(cmd: list[str]) -> str:
  return ' '.join(shlex.quote(c) for c in cmd)


def main(spec: TpuSpec, argv: list[str], workdir: str, root: str, *,
         runner=subprocess.run, out=sys.stdout) -> int:
  """Runs (or, with dry_run, prints) the whole sequence; returns the exit status."""
  def say(what, cmd):
    print(f'# {what}\n{show(cmd)}', file=out, flush=True)

  try:
    files = code_files(root, spec.extra)
  except LaunchError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  packed = (f'pack the code: {len(files)} files (the tracked ones'
            f'{", and --ship_extra " + ", ".join(spec.extra) if spec.extra else ""}), their '
            f'NUL-separated names on stdin, into a private archive (mode 0600, deleted '
            f'afterwards)')
  if spec.dry_run:
    steps = plan(spec, argv, workdir, root)
    steps[0] = (packed, steps[0][1])
    say('use the TPU VM if it exists', describe_cmd(spec))
    for c in create_cmds(spec):
      say('... else create it', c)
    if spec.queued_resource:
      say('... and wait until the queued resource is ACTIVE (polled every 30 s)',
          queued_state_cmd(spec))
    for what, cmd in steps:
      say(what, cmd)
    return 0

  fd, archive = tempfile.mkstemp(prefix='seqlab-code-', suffix='.tar.gz')   # mode 0600
  os.close(fd)
  try:
    return _run(spec, plan(spec, argv, workdir, root, archive), root, files, archive,
                packed, runner, say, out)
  finally:
    os.unlink(archive)


def _run(spec, steps, root, files, archive, packed, runner, say, out) -> int:
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
    if cmd == pack_cmd(archive):
      say(packed, cmd)
      rc = runner(cmd, input=b''.join(f.encode() + b'\0' for f in files),
                  cwd=root).returncode
      if rc == 0:
        try:
          check_archive(archive, files)
        except LaunchError as e:
          print(f'error: {e}', file=sys.stderr)
          return 1
    else:
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
