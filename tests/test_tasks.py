import numpy as np
import pytest

from seqlab.data import synthetic, tasks


@pytest.mark.parametrize('name', list(tasks.TASKS))
def test_batches_are_a_function_of_seed_and_step(name):
  task = tasks.TASKS[name]
  a = task.batch(3, 17, 4, 20)
  b = task.batch(3, 17, 4, 20)
  c = task.batch(3, 18, 4, 20)
  d = task.batch(3, 17, 4, 20, split=tasks.EVAL)
  for k in a:
    np.testing.assert_array_equal(a[k], b[k])
  assert any(not np.array_equal(a[k], c[k]) for k in a)
  assert any(not np.array_equal(a[k], d[k]) for k in a)
  assert a['inputs'].shape[:2] == (4, task.input_len(20))


def test_adding_mean_predictor_scores_one_sixth():
  b = tasks.TASKS['adding'].batch(0, 0, 200_000, 30)
  assert abs(np.mean((b['targets'] - 1.0) ** 2) - 1 / 6) < 2e-3
  markers = b['inputs'][..., 1]
  assert np.all(markers.sum(1) == 2)
  assert np.all(markers[:, :15].sum(1) == 1)


def test_kback_targets_and_mask():
  task = tasks.TASKS['kback']
  b = task.batch(0, 0, 2, 40)
  k = synthetic.KBACK_K
  np.testing.assert_array_equal(b['targets'][:, k:], b['inputs'][:, :-k])
  assert b['mask'][:, :k].sum() == 0 and np.all(b['mask'][:, k:] == 1)


def test_recall_target_is_first_token():
  b = tasks.TASKS['recall'].batch(0, 0, 5, 9)
  np.testing.assert_array_equal(b['targets'], b['inputs'][:, 0])
