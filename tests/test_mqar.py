"""MQAR (seqlab.data.mqar): targets re-derived from the inputs alone, (seed, step)
determinism, the mask, the options read from config.task, and the registry entry."""
import math

import ml_collections
import numpy as np
import pytest

from seqlab.data import mqar, tasks


def build(**options):
  return tasks.build(ml_collections.ConfigDict(dict(name='mqar', seq_len=32, **options)))


def recall_by_hand(inputs, num_pairs):
  """Targets and mask recomputed from one input row: the pairs are the first 2P tokens;
  a later token equal to a key is a query whose target is that key's value."""
  pairs = {int(inputs[2 * j]): int(inputs[2 * j + 1]) for j in range(num_pairs)}
  targets, mask = np.zeros(len(inputs), int), np.zeros(len(inputs))
  for i in range(2 * num_pairs, len(inputs)):
    if int(inputs[i]) in pairs:
      targets[i], mask[i] = pairs[int(inputs[i])], 1.0
  return targets, mask


@pytest.mark.parametrize('num_pairs, vocab, t', [(2, 16, 16), (4, 64, 32), (8, 128, 40)])
def test_targets_are_the_values_bound_to_the_queried_keys(num_pairs, vocab, t):
  task = build(num_pairs=num_pairs, vocab_size=vocab)
  b = task.batch(seed=3, step=5, batch_size=16, seq_len=t)
  assert b['inputs'].shape == b['targets'].shape == b['mask'].shape == (16, t)
  assert b['inputs'].dtype == np.int32 and b['mask'].dtype == np.float32
  for x, y, m in zip(b['inputs'], b['targets'], b['mask']):
    keys, values = x[0:2 * num_pairs:2], x[1:2 * num_pairs:2]
    assert len(set(keys)) == num_pairs and len(set(values)) == num_pairs
    assert keys.min() >= 1 and keys.max() < vocab // 2          # keys: 1 .. V/2 - 1
    assert values.min() >= vocab // 2 and values.max() < vocab   # values: V/2 .. V - 1
    want_y, want_m = recall_by_hand(x, num_pairs)
    np.testing.assert_array_equal(m, want_m)
    np.testing.assert_array_equal(y * m, want_y)
    assert m.sum() == num_pairs                                  # every key asked exactly once
    q = np.flatnonzero(m)
    assert ((q - 2 * num_pairs) % 2 == 0).all()                  # queries at even offsets
    assert (x[2 * num_pairs:][m[2 * num_pairs:] == 0] == 0).all()  # the rest is blank (0)


def test_random_non_queries_fill_the_blanks_and_keep_the_queries():
  task = build(num_pairs=4, vocab_size=64, random_non_queries=True)
  b = task.batch(0, 0, 64, 32)
  rest = b['inputs'][:, 8:][b['mask'][:, 8:] == 0]
  assert (rest != 0).mean() > 0.9                               # noise, not blanks
  for x, y, m in zip(b['inputs'], b['targets'], b['mask']):
    pairs = dict(zip(x[0:8:2].tolist(), x[1:8:2].tolist()))
    assert m.sum() == 4
    assert all(y[i] == pairs[x[i]] for i in np.flatnonzero(m))


def test_a_batch_is_a_function_of_seed_split_and_step():
  task = build(num_pairs=4, vocab_size=64)
  a, b = task.batch(1, 7, 8, 32), task.batch(1, 7, 8, 32)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a['inputs'], task.batch(1, 8, 8, 32)['inputs'])
  assert not np.array_equal(a['inputs'], task.batch(2, 7, 8, 32)['inputs'])
  assert not np.array_equal(a['inputs'], task.batch(1, 7, 8, 32, split=tasks.EVAL)['inputs'])


def test_query_gaps_follow_the_power_law():
  """power_a = 0.01: most queries sit right after the pairs; power_a = 1: uniform slots."""
  def mean_slot(a):
    b = build(num_pairs=2, vocab_size=16, power_a=a).batch(0, 0, 2000, 104)
    return (np.argwhere(b['mask'])[:, 1] - 4).mean() / 2
  assert mean_slot(0.01) < 20 < mean_slot(1.0)     # uniform over 50 slots: about 25


def test_options_defaults_chance_and_min_length():
  task = build(num_pairs=3, vocab_size=20)
  assert (task.name, task.num_pairs, task.vocab_size, task.num_outputs) == ('mqar', 3, 20, 20)
  assert task.readout == 'per_step' and task.min_seq_len == 12
  assert task.chance_loss(12) == pytest.approx(math.log(10))   # ln(number of values)
  default = tasks.build(ml_collections.ConfigDict(dict(name='mqar', seq_len=64)))
  assert (default.num_pairs, default.vocab_size) == (8, 8192)  # Zoology's vocabulary
  assert 'mqar' in tasks.task_names()


@pytest.mark.parametrize('options, match', [
    (dict(num_pairs=0), 'num_pairs=0'),
    (dict(num_pairs=8, vocab_size=16), 'holds only 7 keys'),
    (dict(power_a=0.0), 'power_a'),
])
def test_bad_options_are_one_line_errors(options, match):
  with pytest.raises(ValueError, match=match):
    build(**options)


def test_mqar_loss_counts_only_the_queries():
  import jax.numpy as jnp
  task = build(num_pairs=2, vocab_size=16)
  b = task.batch(0, 0, 4, 16)
  logits = np.zeros((4, 16, 16), np.float32)
  rows, cols = np.nonzero(b['mask'])
  logits[rows, cols, b['targets'][rows, cols]] = 50.0            # right at every query only
  loss, metrics = tasks.loss_and_metrics(task, jnp.asarray(logits), b)
  assert float(loss) < 1e-6 and float(metrics['accuracy']) == 1.0
  assert mqar.MQARTask is type(task)
