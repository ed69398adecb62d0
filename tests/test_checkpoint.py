"""seqlab.checkpoint: save/restore of a sharded state, retention, damaged steps."""
import os

import jax
import jax.numpy as jnp
import numpy as np
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
    ckpt.save(step, _state(mesh, step), {'eval_loss': loss})
  assert ckpt.all_steps() == [2, 4, 5]  # best (0.1 at step 2) and the last two
  assert checkpoint.CheckpointManager(str(tmp_path / 'd'), every=2).should_save(4)
  assert not checkpoint.CheckpointManager(str(tmp_path / 'd'), every=2).should_save(3)
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
