"""A trained point back from its folder: seqlab.load for notebooks and
`launch.py --evaluate` on held-out data; neither writes anything."""
import math
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

import seqlab
from seqlab import evaluate, train
from seqlab.data import tasks
from seqlab.infra import writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def listing(folder):
  return sorted((os.path.relpath(os.path.join(d, f), folder), os.stat(os.path.join(d, f)).st_mtime)
                for d, _, fs in os.walk(folder) for f in fs)


@pytest.fixture(scope='module')
def point(tmp_path_factory):
  from experiments import long_range
  c = long_range.get_config()
  c.num_devices = 1
  c.model.name, c.model.hidden = 'gru', 8
  c.model.param_budget, c.sweep.lrs = 0, []   # the width given, train.lr
  c.task.seq_len = 10
  c.train.update(dict(batch_size=8, eval_examples=16, log_every=100, steps=30,
                      checkpoint_every=10))
  d = str(tmp_path_factory.mktemp('point') / 'gru-adding-T10-s0')
  train.train(c, d, verbose=False)
  return d


def test_load_returns_a_model_ready_to_call(point):
  before = listing(point)
  model, params, config = seqlab.load(point, checkpoint='latest')
  assert config.model.name == 'gru' and config.train.steps == 30
  task = tasks.build(config.task)
  batch = task.batch(0, 0, 4, 10, split=tasks.EVAL)
  out = model(batch['inputs'])
  assert np.all(np.isfinite(np.asarray(jax.tree.leaves(out)[0])))
  _, state, step, _, _ = evaluate.restore(point, 'latest')
  assert step == 30
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(state['params']), strict=True):
    assert np.array_equal(np.asarray(x), np.asarray(y))
  assert listing(point) == before   # read-only


def test_evaluate_latest_matches_the_runs_own_final_evaluation(point):
  m = evaluate.evaluate(point, 'latest')
  result = writer.read_json(os.path.join(point, 'result.json'))
  assert m['step'] == 30 and m['examples'] == 16
  assert m['loss'] == pytest.approx(result['final_loss'], rel=1e-6)
  assert m['loss_se'] == pytest.approx(result['final_loss_se'], rel=1e-5)
  # the best checkpoint is the one of lowest VALID loss (never chosen on EVAL); --evaluate
  # then reports its EVAL loss
  from seqlab.infra import checkpoint
  mgr = checkpoint.CheckpointManager(os.path.join(point, 'checkpoints'), every=0,
                                     read_only=True)
  best_step = mgr.best_step()
  mgr.close()
  best = evaluate.evaluate(point, 'best')
  assert best['step'] == best_step and math.isfinite(best['loss'])


def test_evaluate_through_the_launcher(point, tmp_path):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  before = listing(point)
  p = subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'), f'--evaluate={point}',
                      '--checkpoint=latest'], cwd=tmp_path, env=env, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 0 and not p.stderr, p.stderr
  assert f'{point}: latest checkpoint (step 30, best chosen on VALID): EVAL loss' in p.stdout
  assert 'over 16 held-out examples' in p.stdout
  assert listing(point) == before and os.listdir(tmp_path) == []
  p = subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'),
                      f'--evaluate={tmp_path}'], cwd=tmp_path, env=env, capture_output=True,
                     text=True, timeout=300)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      f'error: {tmp_path} is not a trained point (it needs config.json and checkpoints/); give '
      f'a point folder such as runs/long_range/lstm-adding-T50-lr0.01-s0'], p.stderr


def test_importing_seqlab_stays_light():
  code = 'import sys, seqlab; print("jax" in sys.modules)'
  p = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True, text=True)
  assert p.stdout.strip() == 'False', p.stderr
