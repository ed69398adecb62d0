"""The TPU VM launcher: --dry_run prints the whole gcloud sequence and runs nothing;
a (fake) real run calls the same commands in order and stops at a failing step."""
import io
import os
import shlex
import subprocess
import sys
import types

from seqlab.infra import tpu_launch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGV = ['--config=experiments/long_range.py', '--models=lstm', '--tasks=adding',
        '--seq_lens=20', '--tpu=seqlab-v4', '--zone=us-central2-b', '--accelerator_type=v4-32',
        '--dry_run', '--workdir=runs/pod']


def test_dry_run_from_launch_prints_every_step_and_runs_nothing(tmp_path):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu',
             PATH=f'{tmp_path}:{os.environ["PATH"]}')
  # A gcloud that records being called: a dry run must never call it.
  (tmp_path / 'gcloud').write_text(f'#!/bin/sh\ntouch {tmp_path}/called\n')
  (tmp_path / 'gcloud').chmod(0o755)
  r = subprocess.run([sys.executable, 'launch.py', *ARGV, '--queued_resource'], cwd=ROOT,
                     env=env, capture_output=True, text=True, timeout=60)
  assert r.returncode == 0, r.stderr
  assert not (tmp_path / 'called').exists()
  cmds = [shlex.split(l) for l in r.stdout.splitlines() if not l.startswith('#')]
  heads = [' '.join(c[:5] if c[0] == 'gcloud' else c[:1]) for c in cmds]
  assert heads == [
      'gcloud compute tpus tpu-vm describe', 'gcloud compute tpus queued-resources create',
      'gcloud compute tpus queued-resources describe', 'tar',
      'gcloud compute tpus tpu-vm scp', 'gcloud compute tpus tpu-vm ssh',
      'gcloud compute tpus tpu-vm ssh', 'gcloud compute tpus tpu-vm ssh',
      'gcloud compute tpus tpu-vm scp']
  assert '--accelerator-type=v4-32' in cmds[1] and '--zone=us-central2-b' in cmds[1]
  assert '--worker=all' in cmds[4] and '--worker=all' in cmds[5] and '--worker=all' in cmds[6]
  assert '--worker=0' in cmds[7] and '--worker=0' in cmds[8]
  start = next(a for a in cmds[6] if a.startswith('--command='))
  # Every worker runs the same launch.py command, minus the launcher flags, plus --distributed.
  assert ('launch.py --config=experiments/long_range.py --models=lstm --tasks=adding '
          '--seq_lens=20 --workdir=runs/pod --distributed') in start
  assert '--tpu' not in start and '--dry_run' not in start and '--zone' not in start
  assert 'jax[tpu]==' in next(a for a in cmds[5] if a.startswith('--command='))
  assert cmds[8][-4:-2] == ['seqlab-v4:seqlab/runs/pod', '.']   # under the worker's home


def test_tpu_needs_zone(tmp_path):
  r = subprocess.run([sys.executable, 'launch.py', '--models=lstm', '--tpu=x', '--dry_run',
                      f'--workdir={tmp_path}'], cwd=ROOT,
                     env=dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu'),
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 2 and '--tpu=x needs --zone' in r.stderr


class FakeGcloud:
  """Records commands; `describe` says the VM exists unless told otherwise."""

  def __init__(self, exists=True, fail_on=None):
    self.calls, self.exists, self.fail_on = [], exists, fail_on

  def __call__(self, cmd, **kwargs):
    self.calls.append(cmd)
    if cmd[0] != 'gcloud':   # packing the code runs for real
      return subprocess.run(cmd, **kwargs)
    rc = 0
    if 'describe' in cmd and not self.exists:
      rc = 1
    if self.fail_on and self.fail_on in ' '.join(cmd):
      rc = 1
    return types.SimpleNamespace(returncode=rc, stdout='READY\n')


def spec(**kw):
  return tpu_launch.TpuSpec('seqlab-v4', 'us-central2-b', project='lab', **kw)


def test_existing_vm_is_used_and_steps_run_in_order():
  gcloud, out = FakeGcloud(), io.StringIO()
  rc = tpu_launch.main(spec(), ['--models=lstm'], 'gs://bucket/runs', ROOT, runner=gcloud,
                       out=out)
  assert rc == 0
  assert not any('create' in c for c in gcloud.calls)
  assert all('--project=lab' in c for c in gcloud.calls if c[0] == 'gcloud')
  assert gcloud.calls[-1][:4] == ['gcloud', 'storage', 'ls', 'gs://bucket/runs']
  assert len(gcloud.calls) == 1 + 6
  # What ran is what was printed.
  printed = [l for l in out.getvalue().splitlines() if not l.startswith('#')]
  assert printed == [tpu_launch.show(c) for c in gcloud.calls]


def test_missing_vm_is_created_and_a_failed_step_stops(capsys):
  gcloud = FakeGcloud(exists=False, fail_on='pip install')
  rc = tpu_launch.main(spec(), [], 'runs/x', ROOT, runner=gcloud, out=io.StringIO())
  assert rc == 1
  assert gcloud.calls[1][:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'create']
  assert 'pip install' in ' '.join(gcloud.calls[-1])  # nothing after the failing step
  assert 'step "unpack and install on every worker" failed' in capsys.readouterr().err


def test_notpu_install_unpacks_only():
  steps = dict(tpu_launch.plan(spec(install=False), [], 'runs/x', ROOT))
  assert 'unpack and install on every worker' not in steps
  unpack = next(a for a in steps['unpack on every worker'] if a.startswith('--command='))
  assert 'tar xzf' in unpack and 'pip' not in unpack and 'venv' not in unpack


def test_remote_args_drop_launcher_flags():
  assert tpu_launch.remote_launch_args(
      ['--tpu=a', '--zone=z', '--noqueued_resource', '--dry_run', '--project=p',
       '--notpu_install',
       '--models=lstm', '--config.train.steps=5']) == [
           '--models=lstm', '--config.train.steps=5', '--distributed']


def test_remote_args_drop_every_form_of_the_launcher_flags():
  """absl takes --tpu=pod, -tpu=pod and --tpu pod; none may reach the workers."""
  assert tpu_launch.remote_launch_args(
      ['--tpu', 'pod', '-zone=z', '-project', 'p', '--dry_run', '-nodry_run', '--models',
       'lstm', '--ship_extra', 'data', '-accelerator_type=v4-32', '--tpu_install',
       '--config.train.steps=5', '--', '--tpu=kept']) == [
           '--models', 'lstm', '--config.train.steps=5', '--', '--tpu=kept', '--distributed']


def _repo(tmp_path, n):
  """A git checkout of n tracked files whose names are long enough that the list passes
  xargs' buffer (128 KiB) many times over, and some untracked files."""
  root = tmp_path / 'repo'
  names = [f'pkg/module_with_a_long_descriptive_name_{"x" * 60}_{i:05d}.py' for i in range(n)]
  (root / 'pkg').mkdir(parents=True)
  for name in names:
    (root / name).write_text(name)
  (root / 'requirements.txt').write_text('jax==0.10.2\n')
  names.append('requirements.txt')
  git = lambda *a: subprocess.run(['git', *a], cwd=root, check=True, capture_output=True)
  git('init', '-q')
  git('add', '-A')
  (root / 'service-account.json').write_text('{"private_key": "secret"}')   # untracked
  (root / 'notes.txt').write_text('untracked, not opted in')
  (root / 'data').mkdir()
  (root / 'data' / 'extra.csv').write_text('a,b\n')
  return root, names


class Shipped(FakeGcloud):
  """Also keeps a copy of the archive at the moment it is copied to the workers."""

  def __init__(self, keep, **kw):
    super().__init__(**kw)
    self.keep, self.archive = keep, None

  def __call__(self, cmd, **kwargs):
    if cmd[:5] == ['gcloud', 'compute', 'tpus', 'tpu-vm', 'scp'] and self.archive is None:
      self.archive = cmd[5]
      self.mode = os.stat(self.archive).st_mode & 0o777
      import shutil
      shutil.copy(self.archive, self.keep)
    return super().__call__(cmd, **kwargs)


def _members(path):
  import tarfile
  with tarfile.open(path) as t:
    return sorted(m.name for m in t.getmembers() if not m.isdir())


def test_pack_ships_every_tracked_file_past_xargs_buffer_and_nothing_else(tmp_path):
  root, names = _repo(tmp_path, 2500)
  listed = sum(len(n) + 1 for n in names)
  assert listed > 2 * 131072          # `xargs tar czf` would run tar 3 or more times
  gcloud = Shipped(tmp_path / 'shipped.tar.gz')
  rc = tpu_launch.main(spec(), [], 'gs://b/runs', str(root), runner=gcloud, out=io.StringIO())
  assert rc == 0
  assert _members(tmp_path / 'shipped.tar.gz') == sorted(names)   # every file, no secret
  assert gcloud.mode == 0o600 and gcloud.archive != '/tmp/seqlab-code.tar.gz'
  assert not os.path.exists(gcloud.archive)                       # deleted afterwards
  tar = next(c for c in gcloud.calls if c[0] == 'tar')
  assert tar[:4] == ['tar', '--null', '--no-recursion', '-T']     # one tar, list on stdin


def test_ship_extra_is_opt_in_and_never_a_secret(tmp_path, capsys):
  root, names = _repo(tmp_path, 3)
  gcloud = Shipped(tmp_path / 'shipped.tar.gz')
  rc = tpu_launch.main(spec(extra=('data',)), [], 'gs://b/r', str(root), runner=gcloud,
                       out=io.StringIO())
  assert rc == 0 and _members(tmp_path / 'shipped.tar.gz') == sorted(names + ['data/extra.csv'])
  for extra, why in [('.', "service-account.json is named like a secret"),
                     ('../', 'is outside the checkout'), ('nope', 'no such file or folder')]:
    gcloud = FakeGcloud()
    rc = tpu_launch.main(spec(extra=(extra,)), [], 'gs://b/r', str(root), runner=gcloud,
                         out=io.StringIO())
    err = capsys.readouterr().err
    assert rc == 2 and why in err and len(err.strip().splitlines()) == 1, err
    assert gcloud.calls == []                                     # nothing ran


def test_an_archive_short_of_the_list_is_caught_before_copying(tmp_path, capsys):
  root, names = _repo(tmp_path, 20)

  def xargs_like(cmd, **kwargs):   # what `xargs tar czf` leaves: the last batch only
    if cmd[0] == 'tar':
      kwargs['input'] = kwargs['input'].split(b'\0', 15)[-1]
      return subprocess.run(cmd, **kwargs)
    return FakeGcloud()(cmd, **kwargs)

  calls = []
  rc = tpu_launch.main(spec(), [], 'gs://b/r', str(root),
                       runner=lambda c, **k: (calls.append(c), xargs_like(c, **k))[1],
                       out=io.StringIO())
  err = capsys.readouterr().err
  assert rc == 1 and f'not the {len(names)} listed' in err and 'nothing was copied' in err
  assert not any('scp' in c for c in calls)


def test_scp_remote_paths_are_quoted_for_the_workers_shell():
  steps = dict(tpu_launch.plan(spec(), [], "runs/it's a pod", ROOT))
  fetch = steps['fetch the workdir from worker 0']
  assert fetch[6] == 'seqlab-v4:' + shlex.quote("seqlab/runs/it's a pod")
  from seqlab.infra import fake_pod
  assert fake_pod.remote(fetch[6]) == ('seqlab-v4', "seqlab/runs/it's a pod")


def test_unpack_is_refused_under_a_run_still_going(tmp_path):
  import tarfile
  home = tmp_path / 'home'
  (home / 'seqlab').mkdir(parents=True)
  (tmp_path / 'new.py').write_text('new code')
  with tarfile.open(home / tpu_launch.REMOTE_ARCHIVE, 'w:gz') as t:
    t.add(tmp_path / 'new.py', 'new.py')
  run = lambda: subprocess.run(['bash', '-c', tpu_launch.unpack_cmd()], env=dict(
      os.environ, HOME=str(home)), capture_output=True, text=True, timeout=30)
  going = subprocess.Popen(['sleep', '60'])
  try:
    (home / 'seqlab' / 'launch.pid').write_text(str(going.pid))
    r = run()
    assert r.returncode == 3 and 'a run is still going on' in r.stderr, r.stderr
    assert not (home / 'seqlab' / 'new.py').exists()             # nothing unpacked
    (home / 'seqlab' / 'launch.rc').write_text('0')              # that run has ended
    r = run()
    assert r.returncode == 0 and (home / 'seqlab' / 'new.py').read_text() == 'new code'
  finally:
    going.kill()
    going.wait()


def test_flagfile_is_refused_with_tpu(tmp_path):
  (tmp_path / 'flags.txt').write_text('--models=lstm\n')
  r = subprocess.run([sys.executable, 'launch.py', '--tpu=x', '--zone=z', '--dry_run',
                      f'--flagfile={tmp_path}/flags.txt', f'--workdir={tmp_path}/w'],
                     cwd=ROOT, env=dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu'),
                     capture_output=True, text=True, timeout=60)
  assert r.returncode == 2 and 'cannot be used with --tpu' in r.stderr, r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
