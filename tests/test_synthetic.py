"""Every synthetic task's targets recomputed from its inputs with plain numpy loops, its
registry entry checked against what its batches hold, and its chance level estimated
from its own data (the best predictor that knows the position but not the past)."""
import math

import numpy as np
import pytest

from seqlab.data import synthetic, tasks


def batch(name, b, t, step=0):
  return tasks.TASKS[name].batch(0, step, b, t)


def test_adding_target_is_the_sum_of_the_two_marked_values():
  t = 9
  x = batch('adding', 64, t)
  assert x['inputs'].shape == (64, t, 2) and x['inputs'].dtype == np.float32
  assert x['targets'].shape == (64,) and x['targets'].dtype == np.float32
  for inp, y in zip(x['inputs'], x['targets']):
    values, markers = inp[:, 0], inp[:, 1]
    marked = [i for i in range(t) if markers[i] == 1.0]
    assert len(marked) == 2 and set(markers) <= {0.0, 1.0}
    assert marked[0] < t // 2 <= marked[1]           # one in each half
    assert y == pytest.approx(values[marked[0]] + values[marked[1]], abs=1e-6)
    assert ((0 <= values) & (values < 1)).all()


def test_adding_markers_cover_each_half_and_values_are_uniform():
  t = 6
  x = batch('adding', 4000, t)
  pos = [np.nonzero(m)[0] for m in x['inputs'][..., 1]]
  assert {int(p[0]) for p in pos} == {0, 1, 2} and {int(p[1]) for p in pos} == {3, 4, 5}
  values = x['inputs'][..., 0]
  assert abs(values.mean() - 0.5) < 0.01 and abs(values.var() - 1 / 12) < 0.005


def test_adding_chance_is_the_variance_of_the_target():
  task = tasks.TASKS['adding']
  y = batch('adding', 100_000, 20)['targets'].astype(np.float64)
  assert task.chance_loss(20) == pytest.approx(y.var(), rel=0.02)
  assert abs(y.mean() - 1.0) < 0.01   # the input-blind best guess is the mean, 1


def test_copy_layout_symbols_blanks_markers_and_targets():
  t = 7
  x = batch('copy', 500, t)
  inp, y = x['inputs'], x['targets']
  n = synthetic.COPY_LEN
  assert inp.shape == y.shape == x['mask'].shape == (500, t + 2 * n)
  assert inp.dtype == y.dtype == np.int32 and x['mask'].dtype == np.float32
  for row_x, row_y in zip(inp, y):
    symbols = list(row_x[:n])
    assert all(1 <= s <= 8 for s in symbols)
    assert list(row_x[n:n + t - 1]) == [0] * (t - 1)       # T-1 blanks
    assert list(row_x[n + t - 1:]) == [9] * (n + 1)        # then 11 markers
    assert list(row_y[:n + t]) == [0] * (n + t)            # blank targets
    assert list(row_y[n + t:]) == symbols                   # then the symbols again
  assert set(np.unique(inp[:, :n])) == set(range(1, 9))
  assert (x['mask'] == 1).all()


def test_recall_target_is_the_first_token_and_tokens_are_uniform():
  x = batch('recall', 4000, 5)
  assert x['inputs'].dtype == x['targets'].dtype == np.int32
  np.testing.assert_array_equal(x['targets'], [row[0] for row in x['inputs']])
  counts = np.bincount(x['inputs'].ravel(), minlength=8)
  assert counts.size == 8 and counts.min() > 0.8 * counts.mean()


def test_kback_target_is_the_token_k_steps_back_where_the_mask_is_on():
  k, t = synthetic.KBACK_K, synthetic.KBACK_K + 5
  x = batch('kback', 20, t)
  for row_x, row_y, row_m in zip(x['inputs'], x['targets'], x['mask']):
    for i in range(t):
      assert row_m[i] == (1.0 if i >= k else 0.0)
      if i >= k:
        assert row_y[i] == row_x[i - k]
  assert set(np.unique(x['inputs'])) == set(range(synthetic.KBACK_VOCAB))


def position_entropy(targets, mask=None):
  """Mean over counted positions of the entropy of the targets at that position: the
  loss of the best predictor that knows t but nothing of the inputs."""
  n, l = targets.shape
  mask = np.ones((n, l)) if mask is None else mask
  h = []
  for i in range(l):
    keep = mask[:, i] > 0
    if keep.any():
      p = np.bincount(targets[keep, i]) / keep.sum()
      p = p[p > 0]
      h.append((-(p * np.log(p)).sum(), keep.sum()))
  return sum(e * c for e, c in h) / sum(c for _, c in h)


@pytest.mark.parametrize('name, t', [('copy', 12), ('copy', 40), ('kback', 24)])
def test_per_step_chance_is_the_entropy_a_memoryless_predictor_pays(name, t):
  x = batch(name, 40_000, t)
  est = position_entropy(x['targets'], x['mask'])
  assert tasks.TASKS[name].chance_loss(t) == pytest.approx(est, rel=0.01)


def test_recall_chance_is_the_label_entropy():
  y = batch('recall', 40_000, 4)['targets']
  assert tasks.TASKS['recall'].chance_loss(4) == pytest.approx(position_entropy(y[:, None]),
                                                                rel=0.01)


@pytest.mark.parametrize('name', list(synthetic.TASKS))
def test_registry_entry_matches_the_batches(name):
  task = tasks.TASKS[name]
  assert task.name == name and task.batch_fn is None
  t = max(task.min_seq_len, 20)
  x = task.batch(1, 2, 256, t)
  assert x['inputs'].shape[:2] == (256, task.input_len(t))
  if task.vocab_size:                           # tokens: ids 0..V-1, all of them used
    assert x['inputs'].ndim == 2 and x['inputs'].max() + 1 == task.vocab_size
  else:
    assert task.vocab_size == 0 and x['inputs'].shape[2] == task.input_dim
  if task.loss_type == 'xent':   # the head predicts over the input alphabet (copy: as TCN)
    assert x['targets'].max() < task.num_outputs == task.vocab_size
  else:
    assert task.loss_type == 'mse' and task.num_outputs == 1
  if task.readout == 'per_step':
    assert x['targets'].shape == x['inputs'].shape[:2] and 'mask' in x
  else:
    assert task.readout == 'last' and x['targets'].shape == (256,) and 'mask' not in x


@pytest.mark.parametrize('name', list(synthetic.TASKS))
def test_min_seq_len_is_the_shortest_well_formed_batch(name):
  task = tasks.TASKS[name]
  x = task.batch(0, 0, 64, task.min_seq_len)
  assert x['inputs'].shape[1] == task.input_len(task.min_seq_len)
  if 'mask' in x:
    assert x['mask'].sum() > 0                   # something to learn at the shortest T
  if name in ('adding', 'copy', 'kback'):        # one step shorter is not a task
    try:
      y = task.batch(0, 0, 64, task.min_seq_len - 1)
    except ValueError:
      return
    assert 'mask' in y and y['mask'].sum() == 0


def test_chance_docs_name_the_formula():
  assert '1/6' in tasks.TASKS['adding'].chance_doc
  assert tasks.TASKS['kback'].chance_doc.endswith(f'V = {synthetic.KBACK_VOCAB}')
  assert math.isclose(tasks.TASKS['kback'].chance_loss(100), math.log(8))
