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
      'gcloud compute tpus queued-resources describe', 'bash',
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
  assert cmds[8][-4:-2] == ['seqlab-v4:~/seqlab/runs/pod', '.']


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
