"""Preemption-safe runs with real processes: kill -9 and resume bitwise, SIGTERM,
divergence, interrupted sweeps, the workdir lock and config check, a full disk."""
import errno
import json
import os
import random
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from seqlab import sweep, train
from seqlab.data import tasks
from seqlab.infra import checkpoint, writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)

# Kills are triggered by what the run wrote, never by a race with the clock: KILL (JSON in
# the environment) names a metrics line ({"step_line": N}: right after step N's line is
# written) or a checkpoint ({"checkpoint": C}: right after checkpoint C is saved), and
# the process SIGKILLs itself there ("signal": "SIGTERM" sends a preemption notice instead;
# "workdir": a sweep point's folder, to kill in that point only).
KILL_HOOK = """
import json, os, signal
from seqlab.infra import checkpoint, writer
_kill = json.loads(os.environ.get('KILL', '{}'))
_write, _save = writer.MetricWriter.write, checkpoint.CheckpointManager.save
def write(self, step, metrics):
  _write(self, step, metrics)
  if step == _kill.get('step_line') and 'loss' in metrics and \\
      _kill.get('workdir', self.path) in self.path:
    os.kill(os.getpid(), getattr(signal, _kill.get('signal', 'SIGKILL')))
def save(self, step, state, metrics=None):
  _save(self, step, state, metrics)
  if step == _kill.get('checkpoint'):
    os.kill(os.getpid(), signal.SIGKILL)
writer.MetricWriter.write, checkpoint.CheckpointManager.save = write, save
"""
# One tiny point: train(config, workdir) with dotted overrides given as JSON.
DRIVER = KILL_HOOK + """
import sys
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
# launch.py itself, as the user runs it, with the kill hook installed first.
LAUNCH = KILL_HOOK + """
import runpy, sys
sys.argv = ['launch.py'] + sys.argv[1:]
runpy.run_path('launch.py', run_name='__main__')
"""
BASE = {'num_devices': 1, 'model.name': 'gru', 'model.hidden': 16, 'model.param_budget': 0, 'task.seq_len': 100,
        'train.batch_size': 8, 'train.log_every': 10, 'train.eval_examples': 8,
        'train.checkpoint_every': 10, 'train.steps': 120}


def _start(workdir, overrides, kill=None):
  return subprocess.Popen([sys.executable, '-c', DRIVER, str(workdir), json.dumps(overrides)],
                          env=dict(ENV, KILL=json.dumps(kill or {})), cwd=ROOT,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(workdir, overrides, kill=None):
  p = _start(workdir, overrides, kill)
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


def _assert_same_state(ref, cut, overrides):
  (a, sa), (b, sb) = _restore(ref, overrides), _restore(cut, overrides)
  assert sa == sb == overrides['train.steps']
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert np.array_equal(np.asarray(x), np.asarray(y))


def _losses(workdir):
  return [(r['step'], r['loss'], r['grad_norm'])
          for r in writer.read_jsonl(os.path.join(workdir, 'metrics.jsonl')) if 'loss' in r]


# Seeded kill points: a step line between two checkpoints (the lines after the last
# checkpoint are dropped and redone), and the moment a checkpoint is saved.
KILLS = [{'step_line': random.Random(25).randint(BASE['train.checkpoint_every'] + 1,
                                                 BASE['train.steps'] - 20)},
         {'checkpoint': 3 * BASE['train.checkpoint_every']}]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  ref = tmp_path_factory.mktemp('ref')
  code, _, err = _run(ref, BASE)
  assert code == 0, err
  return ref


@pytest.mark.parametrize('kill', KILLS, ids=lambda k: next(iter(k)))
def test_kill9_then_resume_is_bitwise_identical(tmp_path, uninterrupted, kill):
  cut = tmp_path / 'cut'
  code, _, _ = _run(cut, BASE, kill)
  assert code == -signal.SIGKILL
  assert not os.path.exists(cut / 'result.json')
  at = kill.get('step_line') or kill['checkpoint']
  assert _metric_steps(cut)[-1] == at                     # killed where it said
  code, out, err = _run(cut, BASE)
  assert code == 0, err
  resumed = at - at % BASE['train.checkpoint_every']
  assert f'resuming from checkpoint step {resumed}' in out
  assert _metric_steps(cut) == list(range(1, BASE['train.steps'] + 1))  # no duplicates
  assert _losses(cut) == _losses(uninterrupted)           # bitwise, every step
  _assert_same_state(uninterrupted, cut, BASE)


def test_sigterm_saves_at_next_step_and_exits_143(tmp_path):
  over = dict(BASE, **{'train.checkpoint_every': 0, 'train.steps': 100000})
  code, out, err = _run(tmp_path, over, {'step_line': 5, 'signal': 'SIGTERM'})
  assert code == 143, err   # 128 + SIGTERM: saved, not finished (`a && b` stops)
  # the notice came while step 5's line was written: the state after step 6 is saved
  assert 'SIGTERM: saved checkpoint at step 6' in out
  state, step = _restore(tmp_path, over)
  assert step == 6 and int(state['step']) == step
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


LAUNCH_ARGS = ('--config=experiments/long_range.py', '--config.num_devices=1',
               '--config.model.hidden=8', '--config.model.param_budget=0', '--lrs=', '--config.train.batch_size=8',
               '--config.train.eval_examples=8', '--config.train.log_every=5', '--tasks=adding',
               '--seq_lens=10', '--seeds=0')


def _launch(workdir, *args, kill=None):
  return subprocess.run(
      [sys.executable, '-c', LAUNCH, *LAUNCH_ARGS, f'--workdir={workdir}', *args],
      env=dict(ENV, KILL=json.dumps(kill or {})), cwd=ROOT, capture_output=True, text=True,
      timeout=180)


def _point_state(point_dir):
  """(state, step) of the newest checkpoint of a sweep point, from its config.json."""
  import ml_collections
  c = ml_collections.ConfigDict(writer.read_json(os.path.join(point_dir, 'config.json')))
  task = tasks.build(c.task)
  cfg = train.model_config(c, task, int(c.task.seq_len))
  _, state = train.init_state(cfg, int(c.seed), train.make_optimizer(c.train))
  ckpt = checkpoint.CheckpointManager(os.path.join(point_dir, 'checkpoints'), every=0)
  out = ckpt.restore_latest(checkpoint.abstract(state))
  ckpt.close()
  return out


def _untimed(row):
  """A results row less its timings (wall_s, compile_s, tokens_per_s: *_s), the only
  fields a resumed run may change."""
  return {k: v for k, v in row.items() if not k.endswith('_s')}


def test_interrupted_sweep_reruns_only_unfinished_points_bitwise(tmp_path):
  """Kill -9 in the second of two points (at a seeded step line), rerun the same
  command, and compare every point with an uninterrupted sweep: results rows, every
  step's loss and gradient norm, and the final train state, bitwise."""
  args = ('--models=rnn,gru', '--config.train.steps=40', '--config.train.checkpoint_every=10')
  points = ['rnn-adding-T10-s0', 'gru-adding-T10-s0']
  ref, w = tmp_path / 'ref', tmp_path / 'w'
  r = _launch(ref, *args)
  assert r.returncode == 0, r.stderr
  kill_at = random.Random(21).randint(11, 39)
  r = _launch(w, *args, kill={'step_line': kill_at, 'workdir': points[1]})
  assert r.returncode == -signal.SIGKILL, r.stderr
  assert list(sweep.finished(w)) == points[:1]
  assert _metric_steps(w / points[1])[-1] == kill_at
  assert not os.path.exists(w / points[1] / 'result.json')
  first_result = open(w / points[0] / 'result.json').read()
  r = _launch(w, *args)
  assert r.returncode == 0, r.stderr
  assert f'[{points[0]}] already finished; skipping' in r.stdout
  assert f'resuming from checkpoint step {kill_at - kill_at % 10}' in r.stdout
  assert open(w / points[0] / 'result.json').read() == first_result
  done, want = sweep.finished(w), sweep.finished(ref)
  assert sorted(done) == sorted(want) == sorted(points)
  for name in points:
    assert _untimed(done[name]) == _untimed(want[name]), name
    assert _metric_steps(w / name) == list(range(1, 41))
    assert _losses(w / name) == _losses(ref / name), name
    (a, sa), (b, sb) = _point_state(ref / name), _point_state(w / name)
    assert sa == sb == 40
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
      assert np.array_equal(np.asarray(x), np.asarray(y)), name


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
