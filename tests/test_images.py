"""Sequential image tasks: pixel order, the fixed permutation, the splits, offline digits,
one-line errors, and a small learning test on digits."""
import json

import numpy as np
import pytest

from experiments import long_range
from seqlab import sweep, train
from seqlab.data import images, tasks

N_ROWS = 40   # held out by split_rows (every 10th): rows 9, 19, 29, 39


def config(task, seq_len, **task_kw):
  c = long_range.get_config()
  with c.unlocked():
    c.task.name, c.task.seq_len = task, seq_len
    c.task.update(task_kw)
    c.num_devices = 1
    c.model.param_budget, c.sweep.lrs = 0, []   # the width given, train.lr
  return c


def build(task, **task_kw):
  return tasks.build(config(task, 0, **task_kw).task)


@pytest.fixture
def mnist_like(tmp_path):
  """40 random 28x28 grey PIL images in a parquet file (as datasets writes an Image column);
  row r's label is r % 3. Returns (path, images [40, 28, 28] uint8, labels)."""
  import datasets
  from PIL import Image
  x = np.random.default_rng(0).integers(0, 256, (N_ROWS, 28, 28), dtype=np.uint8)
  y = [r % 3 for r in range(N_ROWS)]
  features = datasets.Features({'image': datasets.Image(), 'label': datasets.Value('int64')})
  datasets.Dataset.from_dict({'image': [Image.fromarray(a) for a in x], 'label': y},
                             features=features).to_parquet(str(tmp_path / 'd.parquet'))
  return str(tmp_path / 'd.parquet'), x, np.array(y)


HELD_OUT = [9, 19, 29, 39]
VALID_ROWS = [35, 36, 37, 38]   # the last 10% (round(36 * 0.1) = 4) of the 36 training rows
TRAIN_ROWS = [r for r in range(N_ROWS) if r not in HELD_OUT + VALID_ROWS]


def test_pixels_are_row_major_real_and_tokens(mnist_like):
  path, x, y = mnist_like
  real = build('smnist', dataset='', path=path).batch(0, 0, 4, 784, tasks.EVAL)
  tok = build('smnist', dataset='', path=path, pixels='tokens').batch(0, 0, 4, 784, tasks.EVAL)
  assert real['inputs'].shape == (4, 784, 1) and real['inputs'].dtype == np.float32
  assert tok['inputs'].shape == (4, 784) and tok['inputs'].dtype == np.int32
  assert real['targets'].dtype == np.int32 and list(real['targets']) == list(y[HELD_OUT])
  for b, r in enumerate(HELD_OUT):
    assert tok['inputs'][b, 28 * 5 + 7] == x[r, 5, 7]     # pixel k = row * 28 + column
    np.testing.assert_array_equal(tok['inputs'][b], x[r].reshape(-1))
    np.testing.assert_allclose(real['inputs'][b, :, 0], x[r].reshape(-1) / 255, rtol=1e-6)
  task = build('smnist', dataset='', path=path, pixels='tokens')
  assert (task.vocab_size, task.num_outputs, task.readout) == (256, 3, 'last')
  assert task.min_seq_len == task.max_seq_len == 784


def test_the_permutation_is_fixed_and_psmnist_is_smnist_permuted(mnist_like):
  path = mnist_like[0]
  perm = images.permutation(784)
  np.testing.assert_array_equal(perm, np.random.default_rng(0).permutation(784))
  np.testing.assert_array_equal(np.sort(perm), np.arange(784))
  assert (perm != np.arange(784)).mean() > 0.9
  for split, step in ((tasks.TRAIN, 3), (tasks.EVAL, 0)):
    plain = build('smnist', dataset='', path=path).batch(1, step, 8, 784, split)
    perm_b = build('psmnist', dataset='', path=path).batch(1, step, 8, 784, split)
    np.testing.assert_array_equal(perm_b['inputs'], plain['inputs'][:, perm])
    np.testing.assert_array_equal(perm_b['targets'], plain['targets'])
  np.testing.assert_array_equal(images.permutation(64), np.random.default_rng(0).permutation(64))


def _rows_of(batch, x):
  """Which image rows a tokens batch holds (each random image is unique)."""
  index = {a.reshape(-1).tobytes(): r for r, a in enumerate(x)}
  return [index[v.astype(np.uint8).tobytes()] for v in batch['inputs']]


def test_eval_walks_held_out_rows_valid_and_eval_never_in_train(mnist_like):
  path, x, _ = mnist_like
  task = build('smnist', dataset='', path=path, pixels='tokens')
  # EVAL: step i -> held-out rows [3i, 3i + 3) mod 4, the same every call and seed
  assert _rows_of(task.batch(0, 0, 3, 784, tasks.EVAL), x) == [9, 19, 29]
  assert _rows_of(task.batch(5, 1, 3, 784, tasks.EVAL), x) == [39, 9, 19]
  assert _rows_of(task.batch(0, 0, 4, 784, tasks.VALID), x) == VALID_ROWS
  # TRAIN: shuffled epochs of exactly the training rows, a function of (seed, step)
  seen = [r for s in range(8) for r in _rows_of(task.batch(2, s, 8, 784), x)]
  assert sorted(seen) == sorted(TRAIN_ROWS * 2)
  assert seen[:8] == _rows_of(task.batch(2, 0, 8, 784), x) != _rows_of(task.batch(3, 0, 8, 784), x)


def test_scifar_grey_is_bt601_luma_of_colour_images(tmp_path):
  import datasets
  from PIL import Image
  rgb = np.random.default_rng(1).integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
  rgb[0, 0, :3] = [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
  datasets.Dataset.from_dict(
      {'img': [Image.fromarray(a) for a in rgb], 'label': ['cat', 'dog'] * 3},
      features=datasets.Features({'img': datasets.Image(), 'label': datasets.Value('string')}),
  ).to_parquet(str(tmp_path / 'c.parquet'))
  task = build('scifar', dataset='', path=str(tmp_path / 'c.parquet'), pixels='tokens',
               eval_fraction=0.5, valid_fraction=0.0)
  b = task.batch(0, 0, 3, 1024, tasks.EVAL)               # held out: rows 1, 3, 5
  luma = np.rint(rgb[[1, 3, 5]].astype(float) @ [0.299, 0.587, 0.114]).reshape(3, 1024)
  assert b['inputs'].shape == (3, 1024) and np.abs(b['inputs'] - luma).max() <= 1
  assert list(b['targets']) == [1, 1, 1] and task.num_outputs == 2   # 'dog' -> 1
  red_green_blue = task.batch(0, 0, 3, 1024, tasks.TRAIN)   # all 3 training rows
  first = [v for v in red_green_blue['inputs'] if (v[1:] == np.rint(
      rgb[0].astype(float) @ [0.299, 0.587, 0.114]).reshape(-1)[1:]).mean() > 0.9]
  assert first and list(first[0][:3]) == [76, 150, 29]     # Y of pure red, green, blue


def test_jsonl_pixel_lists_and_digits_size_check(tmp_path):
  rng = np.random.default_rng(2)
  x = rng.integers(0, 256, (10, 8, 8))
  with open(tmp_path / 'd.jsonl', 'w') as f:
    for r, a in enumerate(x):
      f.write(json.dumps({'pixels': a.tolist(), 'y': 'ab'[r % 2]}) + '\n')
  task = build('digits', dataset='', path=str(tmp_path / 'd.jsonl'), image_column='pixels',
               label_column='y', pixels='tokens', eval_fraction=0.5, valid_fraction=0.0)
  b = task.batch(0, 0, 5, 64, tasks.EVAL)                 # rows 1, 3, 5, 7, 9: label 'b'
  np.testing.assert_array_equal(b['inputs'], x[1::2].reshape(5, 64))
  assert list(b['targets']) == [1] * 5
  with pytest.raises(ValueError, match=r'image 0 of .* is 8x8 pixels; this task reads 28x28'):
    build('smnist', dataset='', path=str(tmp_path / 'd.jsonl'), image_column='pixels',
          label_column='y')


def test_digits_offline_1797_images_of_64_pixels():
  from sklearn.datasets import load_digits
  task = build('digits', pixels='tokens')
  train_rows, valid, ev, classes = images.splits('digits', {})
  assert len(train_rows.labels) + len(valid.labels) + len(ev.labels) == 1797 and classes == 10
  assert task.min_seq_len == task.max_seq_len == 64 and task.num_outputs == 10
  b = task.batch(0, 0, len(ev.labels), 64, tasks.EVAL)
  d = load_digits()
  known = {np.rint(a * 255 / 16).astype(np.uint8).tobytes(): t for a, t in zip(d.data, d.target)}
  assert all(known[v.astype(np.uint8).tobytes()] == t for v, t in zip(b['inputs'], b['targets']))
  real = build('digits').batch(0, 0, 8, 64, tasks.EVAL)['inputs']
  np.testing.assert_allclose(real[..., 0], b['inputs'][:8] / 255, rtol=1e-6)
  permuted = build('pdigits', pixels='tokens').batch(0, 0, 8, 64, tasks.EVAL)['inputs']
  np.testing.assert_array_equal(permuted, b['inputs'][:8][:, images.permutation(64)])
  assert task.held_out_size(tasks.EVAL, 64) == len(ev.labels) == 179
  assert task.held_out_size(tasks.VALID, 64) > 100 and task.chance_loss(64) > 2.2
  assert task.train_majority == int(np.bincount(images.splits('digits', {})[0].labels).argmax())


def test_bad_options_are_one_line_value_errors(mnist_like, monkeypatch):
  path = mnist_like[0]
  cases = [(dict(pixels='rgb'), "task.pixels='rgb'; allowed: real, tokens"),
           (dict(dataset='', path=path, image_column='pic'),
            "task.image_column='pic' is not a column of the dataset; available: image, label"),
           (dict(dataset='', path=path, label_column='y'), "task.label_column='y' is not"),
           (dict(dataset='sklearn'), "holds 8x8 digits; this task reads 28x28 images")]
  for kw, words in cases:
    with pytest.raises(ValueError) as e:
      build('smnist', **kw)
    assert words in str(e.value) and '\n' not in str(e.value)
  with pytest.raises(ValueError, match='always T=64 pixels; use seq_len=64'):
    build('digits').batch(0, 0, 2, 50)
  monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
  with pytest.raises(OSError) as e:
    build('smnist')
  assert "'ylecun/mnist' needs the network" in str(e.value) and 'task digits' in str(e.value)
  assert '\n' not in str(e.value)


def test_a_seq_len_other_than_the_image_length_fails_validation():
  c = long_range.get_config('')
  with c.unlocked():
    c.sweep.tasks, c.sweep.seq_lens = ['digits'], [50]
  with pytest.raises(sweep.ConfigError, match="seq_len=50: task 'digits' reads sequences of "
                                              "exactly 64 steps; use --seq_lens=64"):
    sweep.validate(c)
  c.sweep.seq_lens = [100]
  with pytest.raises(sweep.ConfigError, match='exactly 64 steps'):
    sweep.validate(c)
  c.sweep.seq_lens = [64]
  sweep.validate(c)


def test_gru_beats_the_majority_class_on_digits(tmp_path):
  """Learning test: held-out accuracy far above the majority class (0.156) in 150 steps
  (measured: 0.46 on 160 of the 179 held-out rows)."""
  c = config('digits', 64)
  with c.unlocked():
    c.model.name, c.model.hidden = 'gru', 32
    c.train.update(dict(steps=150, lr=3e-3, batch_size=32, eval_examples=40, warmup_steps=10,
                        log_every=150, checkpoint_every=0))
  r = train.train(c, str(tmp_path), verbose=False)
  # every held-out row scored once (179, whatever eval_examples says); the baselines of
  # those rows: their own majority class, the training majority, the uniform guess
  assert r['eval_examples'] == 179 and r['majority_accuracy'] == pytest.approx(28 / 179)
  assert r['uniform_accuracy'] == 0.1 and r['train_majority_accuracy'] < 0.2
  assert r['final_accuracy'] > 0.3, r
