"""seqlab.checkpoint: save/restore of a sharded state, retention, damaged steps."""
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec as P

from seqlab.infra import checkpoint


def _state(mesh, scale=1.0):
  sh = NamedSharding(mesh, P('data'))
  return {'params': {'w': jax.device_put(jnp.arange(16.0) * scale, sh)},
          'step': jax.device_put(jnp.array(3, jnp.int32), NamedSharding(mesh, P()))}


def _mesh():
  return jax.sharding.Mesh(np.array(jax.devices()[:4]), ('data',))


def test_sharded_roundtrip_keeps_values_and_target_sharding(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.CheckpointManager(str(tmp_path / 'c'), every=2, keep=2)
  assert ckpt.restore_latest(checkpoint.abstract(_state(mesh))) is None
  ckpt.save(4, _state(mesh, 2.0))
  state, step = ckpt.restore_latest(checkpoint.abstract(_state(mesh)))
  assert step == 4
  np.testing.assert_array_equal(state['params']['w'], np.arange(16.0) * 2.0)
  assert state['params']['w'].sharding == NamedSharding(mesh, P('data'))
  ckpt.close()


def test_keeps_last_k_and_best(tmp_path):
  mesh = _mesh()
  ckpt = checkpoint.CheckpointManager(str(tmp_path / 'c'), every=1, keep=2)
  for step, loss in [(1, 0.5), (2, 0.1), (3, 0.4), (4, 0.3), (5, 0.6)]:
    ckpt.save(step, _state(mesh, step), {'valid_loss': loss})
  assert ckpt.all_steps() == [2, 4, 5]  # best (0.1 at step 2) and the last two
  assert ckpt.best_step() == 2            # the lowest valid_loss, not the latest step
  ckpt.save(6, _state(mesh, 6), None)     # a save without metrics is never the best
  assert ckpt.best_step() == 2
  assert checkpoint.CheckpointManager(str(tmp_path / 'd'), every=2).should_save(4)
  assert not checkpoint.CheckpointManager(str(tmp_path / 'd'), every=2).should_save(3)
  ckpt.close()


def test_a_checkpoint_ranked_on_eval_is_never_chosen_over_one_ranked_on_valid(tmp_path):
  """A workdir from before checkpoints were ranked on VALID holds {'eval_loss'}
  metrics: those rank last."""
  mesh = _mesh()
  ckpt = checkpoint.CheckpointManager(str(tmp_path / 'c'), every=1, keep=1)
  ckpt.save(1, _state(mesh, 1), {'eval_loss': 0.01})
  ckpt.save(2, _state(mesh, 2), {'valid_loss': 0.5})
  ckpt.save(3, _state(mesh, 3), {'valid_loss': 0.9})
  assert ckpt.best_step() == 2
  ckpt.close()


def test_damaged_latest_falls_back_and_tmp_dirs_are_removed(tmp_path):
  mesh = _mesh()
  d = tmp_path / 'c'
  ckpt = checkpoint.CheckpointManager(str(d), every=1, keep=3)
  ckpt.save(1, _state(mesh, 1.0))
  ckpt.save(2, _state(mesh, 2.0))
  ckpt.close()
  # Truncate every data file of step 2, as a disk filling up mid-write would.
  for root, _, files in os.walk(d / '2'):
    for f in files:
      if not f.startswith('_') or f == '_METADATA':
        with open(os.path.join(root, f), 'r+b') as fh:
          fh.truncate(max(os.path.getsize(os.path.join(root, f)) // 3, 1))
  (d / '3.orbax-checkpoint-tmp-123').mkdir()  # a save killed half-way
  notes = []
  ckpt = checkpoint.CheckpointManager(str(d), every=1, keep=3,
                                      log=lambda *a, **k: notes.append(' '.join(a)))
  assert not (d / '3.orbax-checkpoint-tmp-123').exists()
  state, step = ckpt.restore_latest(checkpoint.abstract(_state(mesh)))
  assert step == 1
  np.testing.assert_array_equal(state['params']['w'], np.arange(16.0))
  assert 'removed a partially written checkpoint 3.orbax-checkpoint-tmp-123' in notes[0]
  assert len(notes) == 2 and 'step 2' in notes[1]
  ckpt.close()


def test_training_saves_each_checkpoint_with_its_own_held_out_loss(tmp_path, monkeypatch):
  """The 'best' checkpoint is best only if every save is given the VALID loss of the
  parameters it saves (never the reported EVAL one): recompute that loss here from the
  saved parameters (the model and the VALID batches, no train.evaluate) and check
  best_step is its argmin."""
  from flax import nnx

  from experiments import long_range
  from seqlab import models, train
  from seqlab.data import tasks

  saved = []
  save = checkpoint.CheckpointManager.save

  def spy(self, step, state, metrics=None):
    saved.append((step, jax.device_get(state['params']), metrics))
    return save(self, step, state, metrics)

  monkeypatch.setattr(checkpoint.CheckpointManager, 'save', spy)
  c = long_range.get_config()
  with c.unlocked():
    c.num_devices = 1
    c.model.name, c.model.hidden, c.task.seq_len = 'gru', 8, 8
    c.model.param_budget, c.sweep.lrs = 0, []   # the width given, train.lr
    c.train.update(steps=12, batch_size=8, checkpoint_every=3, keep_checkpoints=1,
                   eval_examples=16, log_every=3, lr=3.0, warmup_steps=1)
  train.train(c, str(tmp_path), verbose=False)
  task = tasks.build(c.task)
  cfg = train.model_config(c, task, 8)
  graphdef, _ = nnx.split(models.build(cfg, 0), nnx.Param)
  losses = {}
  for step, params, metrics in saved:
    model = nnx.merge(graphdef, params)
    want = np.mean([float(np.mean((np.asarray(model(b['inputs']))[:, 0] - b['targets']) ** 2))
                    for b in (task.batch(int(c.seed), i, 8, 8, split=tasks.VALID)
                              for i in range(2))])
    assert metrics is not None and set(metrics) == {'valid_loss'}
    assert float(metrics['valid_loss']) == pytest.approx(want, rel=1e-4), step
    losses[step] = want
  assert sorted(losses) == [3, 6, 9, 12]
  assert len(set(round(v, 6) for v in losses.values())) == 4     # the loss moved
  ckpt = checkpoint.CheckpointManager(str(tmp_path / 'checkpoints'), every=0)
  best = min(losses, key=losses.get)
  assert ckpt.best_step() == best
  assert ckpt.all_steps() == sorted({best, 12})   # keep=1: the last and the best
  ckpt.close()
