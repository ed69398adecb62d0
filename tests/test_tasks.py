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


# Every offline task (Hub ones read files: tests/test_images.py, test_text_tasks.py) with
# a length it takes.
OFFLINE = {'adding': 20, 'copy': 20, 'recall': 20, 'kback': 20, 'mqar': 32, 'listops': 32,
           'charlm': 32, 'textclf': 32, 'digits': 64, 'pdigits': 64}


@pytest.mark.parametrize('name', list(OFFLINE))
def test_every_task_has_a_valid_split_apart_from_the_reported_eval(name):
  """Settings and the best checkpoint are chosen on VALID, never on the EVAL numbers a
  study reports: every task must give VALID batches, and they are not EVAL's."""
  import ml_collections
  t = OFFLINE[name]
  task = tasks.build(ml_collections.ConfigDict(dict(name=name, num_pairs=4, vocab_size=16,
                                                    power_a=0.01, random_non_queries=False)))
  valid = task.batch(0, 0, 8, t, split=tasks.VALID)
  ev = task.batch(0, 0, 8, t, split=tasks.EVAL)
  assert valid['inputs'].shape == ev['inputs'].shape
  assert not np.array_equal(valid['inputs'], ev['inputs'])
  if task.held_out_size is not None:   # a finite data set: VALID and EVAL are other rows
    assert task.held_out_size(tasks.VALID, t) > 0 and task.held_out_size(tasks.EVAL, t) > 0
