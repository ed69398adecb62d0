"""The loss every task uses, against numpy, and the split a held-out batch is read from."""
import dataclasses
import types

import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from seqlab import train
from seqlab.data import synthetic, task as task_lib, tasks
from seqlab.infra import sharding


def np_nll(logits, targets):
  """-log softmax(logits)[target], in float64."""
  z = logits.astype(np.float64)
  z = z - z.max(-1, keepdims=True)
  logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
  return -np.take_along_axis(logp, targets[..., None], -1)[..., 0]


def test_masked_xent_counts_only_the_masked_in_positions():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(3, 5, 4)).astype(np.float32)
  targets = rng.integers(0, 4, size=(3, 5))
  mask = (rng.uniform(size=(3, 5)) < 0.5).astype(np.float32)
  mask[0, 0] = 1.0
  loss, m = task_lib.loss_and_metrics(tasks.TASKS['kback'], jnp.asarray(logits),
                                      {'targets': targets, 'mask': mask})
  keep = mask > 0
  np.testing.assert_allclose(loss, np_nll(logits, targets)[keep].mean(), rtol=1e-5)
  np.testing.assert_allclose(m['loss'], loss)
  acc = (logits.argmax(-1) == targets)[keep].mean()
  np.testing.assert_allclose(m['accuracy'], acc, rtol=1e-6)


def test_kback_loss_and_accuracy_ignore_the_first_k_positions():
  """A model exactly right where kback has a target and wrong on the first K positions
  (which have none) scores accuracy 1 and the loss of the right positions."""
  task = tasks.TASKS['kback']
  b = task.batch(0, 0, 4, synthetic.KBACK_K + 6)
  right = 5.0 * np.eye(task.num_outputs)[b['targets']]
  wrong = 5.0 * np.eye(task.num_outputs)[(b['targets'] + 1) % task.num_outputs]
  first_k = np.arange(b['targets'].shape[1]) < synthetic.KBACK_K
  logits = np.where(first_k[None, :, None], wrong, right).astype(np.float32)
  loss, m = task_lib.loss_and_metrics(task, jnp.asarray(logits), b)
  assert float(m['accuracy']) == 1.0
  want = np.log(1 + (task.num_outputs - 1) * np.exp(-5.0))   # nll of a right one-hot x 5
  np.testing.assert_allclose(loss, want, rtol=1e-5)


def test_an_all_zero_mask_gives_zero_loss_not_nan():
  logits = jnp.zeros((2, 3, 4))
  loss, m = task_lib.loss_and_metrics(tasks.TASKS['kback'], logits,
                                      {'targets': np.zeros((2, 3), np.int32),
                                       'mask': np.zeros((2, 3), np.float32)})
  assert float(loss) == 0.0 and float(m['accuracy']) == 0.0


def test_unmasked_xent_is_the_mean_over_examples():
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(6, 8)).astype(np.float32)
  targets = rng.integers(0, 8, size=6)
  loss, m = task_lib.loss_and_metrics(tasks.TASKS['recall'], jnp.asarray(logits),
                                      {'targets': targets})
  np.testing.assert_allclose(loss, np_nll(logits, targets).mean(), rtol=1e-5)
  np.testing.assert_allclose(m['accuracy'], (logits.argmax(-1) == targets).mean())


def test_mse_reads_the_first_output_and_has_no_accuracy():
  out = np.array([[1.0, 9.0], [3.0, -9.0], [0.5, 0.0]], np.float32)
  targets = np.array([2.0, 1.0, 0.5], np.float32)
  loss, m = task_lib.loss_and_metrics(tasks.TASKS['adding'], jnp.asarray(out),
                                      {'targets': targets})
  assert float(loss) == pytest.approx((1 + 4 + 0) / 3)
  assert float(m['loss']) == float(loss) and np.isnan(float(m['accuracy']))


def test_batch_dispatch_uses_seed_split_step():
  seen = []
  t = dataclasses.replace(
      tasks.TASKS['recall'],
      make_batch=lambda rng, b, l: {'x': rng.integers(0, 2 ** 31, size=(b, l))})
  np.testing.assert_array_equal(t.batch(3, 5, 2, 4, split=tasks.EVAL)['x'],
                                np.random.default_rng([3, tasks.EVAL, 5]).integers(
                                    0, 2 ** 31, size=(2, 4)))
  t = dataclasses.replace(t, batch_fn=lambda *a: seen.append(a) or {})
  t.batch(3, 5, 2, 4, split=tasks.EVAL)
  t.batch(3, 5, 2, 4)                       # the training split unless told
  assert seen == [(3, 5, 2, 4, tasks.EVAL), (3, 5, 2, 4, tasks.TRAIN)]
  assert tasks.TRAIN != tasks.EVAL


def test_input_len_and_chance_loss():
  copy = tasks.TASKS['copy']
  assert copy.input_len(30) == 50 and tasks.TASKS['kback'].input_len(30) == 30
  assert isinstance(copy.chance_loss(30), float)


def _echo_eval(calls, held_out_size=None):
  """A task whose batches carry (step, split, example index) and an "eval step" that
  reports each example's target as its loss."""
  def batch_fn(seed, step, batch_size, seq_len, split=tasks.TRAIN):
    calls.append((seed, step, batch_size, seq_len, split))
    idx = step * batch_size + np.arange(batch_size)
    n = held_out_size(split, seq_len) if held_out_size else None
    rows = idx % n if n else idx                    # a finite split wraps past its end
    return {'targets': (rows + 1000 * split).astype(np.float32)}

  task = dataclasses.replace(tasks.TASKS['adding'], batch_fn=batch_fn,
                             held_out_size=held_out_size)
  compiled = types.SimpleNamespace(
      mesh=sharding.make_mesh(1),
      eval_step=lambda params, b: {'loss_sum': b['targets'], 'count': jnp.ones_like(
          b['targets']), 'correct': jnp.zeros_like(b['targets'])})
  return task, compiled


def test_evaluation_reads_only_held_out_batches():
  """A generated task: train.eval_examples fresh EVAL examples, batches 0..n-1, the tail
  of the last batch not scored; the standard error is that of the per-example losses."""
  calls = []
  task, compiled = _echo_eval(calls)
  config = ml_collections.ConfigDict({'train': {'eval_examples': 5, 'batch_size': 2}})
  out = train.evaluate(compiled, None, task, config, 7, seed=4)
  assert calls == [(4, i, 2, 7, tasks.EVAL) for i in range(3)]
  scored = 1000 * tasks.EVAL + np.arange(5)
  assert out['examples'] == 5
  assert out['loss'] == pytest.approx(scored.mean())
  assert out['loss_se'] == pytest.approx(scored.std(ddof=1) / np.sqrt(5))


def test_evaluation_reads_a_finite_split_once_whole():
  """A data set's held-out split of 7 examples at batch 3: 3 batches, every example once,
  none twice (the wrapped tail weighs 0), whatever train.eval_examples says; VALID is
  read from its own split."""
  calls = []
  task, compiled = _echo_eval(calls, held_out_size=lambda split, t: 7 if split == tasks.EVAL
                              else 4)
  config = ml_collections.ConfigDict({'train': {'eval_examples': 2048, 'batch_size': 3}})
  out = train.evaluate(compiled, None, task, config, 7, seed=0)
  assert [c[1] for c in calls] == [0, 1, 2] and out['examples'] == 7
  assert out['loss'] == pytest.approx(np.mean(1000 * tasks.EVAL + np.arange(7)))
  calls.clear()
  out = train.evaluate(compiled, None, task, config, 7, seed=0, split=tasks.VALID)
  assert [c[4] for c in calls] == [tasks.VALID, tasks.VALID] and out['examples'] == 4
  assert out['loss'] == pytest.approx(np.mean(1000 * tasks.VALID + np.arange(4)))
