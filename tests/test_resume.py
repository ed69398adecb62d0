"""Preemption-safe runs with real processes: kill -9 and resume bitwise, SIGTERM,
divergence, interrupted sweeps, the workdir lock and config check, a full disk."""
import errno
import json
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from seqlab import sweep, train
from seqlab.data import tasks
from seqlab.infra import checkpoint, writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)

# One tiny point: train(config, workdir) with dotted overrides given as JSON.
DRIVER = """
import json, sys
from experiments import long_range
from seqlab import train
c = long_range.get_config()
for k, v in json.loads(sys.argv[2]).items():
  node = c
  *parents, leaf = k.split('.')
  for p in parents:
    node = node[p]
  node[leaf] = v
train.train(c, sys.argv[1])
"""
BASE = {'num_devices': 1, 'model.name': 'gru', 'model.hidden': 16, 'task.seq_len': 100,
        'train.batch_size': 8, 'train.log_every': 10, 'train.eval_batches': 1,
        'train.checkpoint_every': 10, 'train.steps': 120}


def _start(workdir, overrides):
  code = DRIVER
  return subprocess.Popen([sys.executable, '-c', code, str(workdir), json.dumps(overrides)],
                          env=ENV, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


def _run(workdir, overrides):
  p = _start(workdir, overrides)
  out, err = p.communicate(timeout=120)
  return p.returncode, out, err


def _config(overrides):
  from experiments import long_range
  c = long_range.get_config()
  for k, v in overrides.items():
    node = c
    *parents, leaf = k.split('.')
    for p in parents:
      node = node[p]
    node[leaf] = v
  return c


def _restore(workdir, overrides):
  """(state, step) of the newest checkpoint in workdir, restored in this process."""
  c = _config(overrides)
  task = tasks.build(c.task)
  cfg = train.model_config(c, task, int(c.task.seq_len))
  _, state = train.init_state(cfg, int(c.seed), train.make_optimizer(c.train))
  ckpt = checkpoint.CheckpointManager(os.path.join(workdir, 'checkpoints'), every=0)
  out = ckpt.restore_latest(checkpoint.abstract(state))
  ckpt.close()
  return out


def _metric_steps(workdir):
  return [r['step'] for r in writer.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
          if 'loss' in r]


def test_kill9_then_resume_is_bitwise_identical(tmp_path):
  ref, cut = tmp_path / 'ref', tmp_path / 'cut'
  assert _run(ref, BASE)[0] == 0
  kill_after = random.Random().randint(BASE['train.checkpoint_every'] + 1,
                                       BASE['train.steps'] - 20)
  p = _start(cut, BASE)
  while p.poll() is None and len(_metric_steps(cut)) < kill_after:
    time.sleep(0.005)
  p.send_signal(signal.SIGKILL)
  p.communicate()
  assert p.returncode == -signal.SIGKILL, 'the run finished before it could be killed'
  assert not os.path.exists(cut / 'result.json')
  code, out, err = _run(cut, BASE)
  assert code == 0, err
  assert 'resuming from checkpoint step' in out
  assert _metric_steps(cut) == list(range(1, BASE['train.steps'] + 1))  # no duplicates
  (a, sa), (b, sb) = _restore(ref, BASE), _restore(cut, BASE)
  assert sa == sb == BASE['train.steps']
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
    assert np.array_equal(np.asarray(x), np.asarray(y))


def test_sigterm_saves_at_next_step_and_exits_0(tmp_path):
  over = dict(BASE, **{'train.checkpoint_every': 0, 'train.steps': 100000})
  p = _start(tmp_path, over)
  while p.poll() is None and len(_metric_steps(tmp_path)) < 5:
    time.sleep(0.01)
  p.send_signal(signal.SIGTERM)
  out, err = p.communicate(timeout=60)
  assert p.returncode == 0, err
  assert 'SIGTERM: saved checkpoint at step' in out
  state, step = _restore(tmp_path, over)
  assert step >= 5 and int(state['step']) == step
  assert _metric_steps(tmp_path) == list(range(1, step + 1))


def test_nonfinite_stops_with_diverged_at_step_and_keeps_good_checkpoint(tmp_path):
  # An Elman RNN with a learning rate of 1e30 blows up; the warm-up makes step 1's
  # update lr=0, so there is a good checkpoint before the divergence.
  over = dict(BASE, **{'model.name': 'rnn', 'train.lr': 1e30, 'train.warmup_steps': 5,
                       'train.checkpoint_every': 1, 'train.steps': 50})
  code, out, err = _run(tmp_path, over)
  assert code == 0, err
  result = writer.read_json(os.path.join(tmp_path, 'result.json'))
  step = result['diverged_at_step']
  assert isinstance(step, int) and 1 < step < 50 and result['final_loss'] is None
  assert 'non-finite loss' in err and f'at step {step};' in err
  state, good = _restore(tmp_path, over)
  assert good < step
  assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(state['params']))


def test_skip_nonfinite_is_bounded(tmp_path):
  over = dict(BASE, **{'model.name': 'rnn', 'train.lr': 1e30, 'train.warmup_steps': 5,
                       'train.checkpoint_every': 0, 'train.steps': 50,
                       'train.skip_nonfinite': 3})
  code, _, err = _run(tmp_path, over)
  assert code == 0, err
  rows = [r for r in writer.read_jsonl(os.path.join(tmp_path, 'metrics.jsonl')) if 'loss' in r]
  step = writer.read_json(os.path.join(tmp_path, 'result.json'))['diverged_at_step']
  # Exactly 3 bad updates were skipped (parameters stayed finite), the 4th applied.
  bad = [r['step'] for r in rows if not r['finite']]
  assert bad[:4] == list(range(bad[0], bad[0] + 4)) and step == bad[0] + 3
  assert all(r['params_finite'] for r in rows if r['step'] < step)


def _launch(workdir, *args):
  return subprocess.run(
      [sys.executable, 'launch.py', '--config=experiments/long_range.py', f'--workdir={workdir}',
       '--config.num_devices=1', '--config.model.hidden=8', '--config.train.batch_size=8',
       '--config.train.eval_batches=1', '--config.train.log_every=5', '--tasks=adding',
       '--seq_lens=10', '--seeds=0', *args],
      env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_interrupted_sweep_reruns_only_unfinished_points(tmp_path):
  w = tmp_path / 'w'
  args = ('--models=rnn,gru', '--config.train.steps=40', '--config.train.checkpoint_every=10')
  cmd = [sys.executable, 'launch.py', '--config=experiments/long_range.py', f'--workdir={w}',
         '--config.num_devices=1', '--config.model.hidden=8', '--config.train.batch_size=8',
         '--config.train.eval_batches=1', '--config.train.log_every=5', '--tasks=adding',
         '--seq_lens=10', '--seeds=0', *args]
  p = subprocess.Popen(cmd, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
  second = w / 'gru-adding-T10-s0'
  while p.poll() is None and len(_metric_steps(second)) < 15:  # mid-way through point 2
    time.sleep(0.005)
  p.send_signal(signal.SIGKILL)
  p.wait()
  assert p.returncode == -signal.SIGKILL
  assert [r['point'] for r in sweep.finished(w).values()] == ['rnn-adding-T10-s0']
  first_result = open(w / 'rnn-adding-T10-s0' / 'result.json').read()
  r = _launch(w, *args)
  assert r.returncode == 0, r.stderr
  assert '[rnn-adding-T10-s0] already finished; skipping' in r.stdout
  assert 'resuming from checkpoint step' in r.stdout
  assert sorted(sweep.finished(w)) == ['gru-adding-T10-s0', 'rnn-adding-T10-s0']
  assert open(w / 'rnn-adding-T10-s0' / 'result.json').read() == first_result
  assert _metric_steps(second) == list(range(1, 41))


def test_lock_and_config_mismatch_are_refused(tmp_path):
  import fcntl
  w = tmp_path / 'w'
  r = _launch(w, '--models=rnn', '--config.train.steps=2')
  assert r.returncode == 0, r.stderr
  with open(w / '.lock', 'a') as f:  # another launch holds the workdir
    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    r = _launch(w, '--models=rnn', '--config.train.steps=2')
  assert r.returncode == 2 and 'is in use by another launch' in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  r = _launch(w, '--models=rnn', '--config.train.steps=3')
  assert r.returncode == 2
  assert 'train.steps: was 2, now 3' in r.stderr and '--override' in r.stderr
  assert len(r.stderr.strip().splitlines()) == 1
  r = _launch(w, '--models=rnn,gru', '--config.train.steps=2')  # a grown sweep is fine
  assert r.returncode == 0, r.stderr
  r = _launch(w, '--models=rnn', '--config.train.steps=3', '--override')
  assert r.returncode == 0, r.stderr


def test_full_disk_leaves_file_as_it_was(tmp_path, monkeypatch):
  path = str(tmp_path / 'results.jsonl')
  writer.append_jsonl_atomic(path, {'point': 'a'})
  before = open(path).read()

  def no_space(fd):
    raise OSError(errno.ENOSPC, 'No space left on device')

  monkeypatch.setattr(os, 'fsync', no_space)
  with pytest.raises(writer.WriteError, match='no space left on the device'):
    writer.append_jsonl_atomic(path, {'point': 'b'})
  assert open(path).read() == before
  assert os.listdir(tmp_path) == ['results.jsonl']  # no temporary file left
