"""Sequential image classification: an image read one grey pixel per step, the class at the end.

The benchmarks of the RNN literature (Le et al. 2015; Arjovsky et al. 2016) and LRA's Image task
(Tay et al. 2021), as task builders registered in seqlab.data.tasks:
  smnist   MNIST, 28x28 -> T=784 pixels in row-major order (row 0 left to right, then row 1 ...)
  psmnist  the same pixels in one fixed order: np.random.default_rng(0).permutation(784),
           the same for every split, run and seed (`permutation`)
  scifar   CIFAR-10, 32x32 colour -> T=1024 grey pixels (LRA Image)
  digits   scikit-learn's bundled 8x8 digits (sklearn.datasets.load_digits, 1,797 images),
           T=64: the offline default, no download
  pdigits  digits with np.random.default_rng(0).permutation(64)
Grey: every image goes through PIL's convert('L'), ITU-R BT.601 luma
Y = 0.299 R + 0.587 G + 0.114 B rounded to an integer 0..255 (LRA's tf.image.rgb_to_grayscale
uses the same weights); grey images are kept as they are. Digits' values 0..16 are scaled to
0..255 (x * 255 / 16, rounded) on load, so every task stores uint8 grey levels.

Options (config.task; OPTIONS, per-task defaults in BENCHMARKS):
  dataset       'auto' (each task's default: smnist/psmnist 'ylecun/mnist', scifar
                'uoft-cs/cifar10', digits 'sklearn'), a Hub id, or '' to read task.path
  path          local .parquet/.csv/.jsonl/.json files or a glob, or an image folder (one
                subfolder per class); the image column holds PIL images, {'bytes', 'path'}
                records, encoded bytes, file paths or nested lists of 0..255 pixel values
  image_column  'auto': 'image' ('img' for scifar); label_column 'label'
  split         the Hub split to train on ('train')
  eval_split    the Hub split held out ('test'); '' -> every k-th training row held out
                (text.split_rows, k = 1/eval_fraction). Local files and digits are one table
                and are always split so; digits' rows are first put in a fixed shuffled order
                (np.random.default_rng(1797)), as load_digits lists the classes cyclically.
  pixels        'real': inputs [B, T, 1] float32, grey / 255 in [0, 1] (not standardised);
                'tokens': inputs [B, T] int32, the grey level 0..255 (vocabulary 256, as LRA)
  valid_fraction  the last fraction (0.1) of the training rows is the VALID split: never in
                TRAIN batches, read to choose settings (the lr); EVAL is the number reported
Batches (split TRAIN, VALID = 2 or EVAL): TRAIN is shuffled epochs over the training rows, a
pure function of (seed, step) (text.example_indices); VALID and EVAL walk their rows in order,
step i -> rows [i B, (i + 1) B) mod N: the evaluation reads ceil(N / B) batches and weighs
the wrapped tail 0 (Task.held_out_size), so every held-out row counts once.
Images are loaded once into uint8 arrays and cached per set of options (smnist and psmnist
share them).
"""
from __future__ import annotations

import dataclasses
import functools
import io
import os

import numpy as np

from seqlab.data import task, text

PIXELS = ('real', 'tokens')
PERMUTATION_SEED = 0        # psmnist / pdigits: np.random.default_rng(0).permutation(T)
DIGITS_ORDER_SEED = 1797    # digits: the fixed shuffle of load_digits' rows before the split
OPTIONS = dict(dataset=None, path='', image_column='image', label_column='label', split='train',
               eval_split='test', pixels='real', eval_fraction=0.1, valid_fraction=0.1,
               revision='')


@dataclasses.dataclass(frozen=True)
class Benchmark:
  side: int                 # images are side x side: T = side ** 2 pixels
  dataset: str              # default task.dataset
  image_column: str         # default task.image_column
  permuted: bool            # pixels read in the fixed order `permutation(T)`


BENCHMARKS = {
    'smnist': Benchmark(28, 'ylecun/mnist', 'image', False),
    'psmnist': Benchmark(28, 'ylecun/mnist', 'image', True),
    'scifar': Benchmark(32, 'uoft-cs/cifar10', 'img', False),
    'digits': Benchmark(8, 'sklearn', 'image', False),
    'pdigits': Benchmark(8, 'sklearn', 'image', True),
}


@dataclasses.dataclass(frozen=True)
class Rows:
  pixels: np.ndarray        # [N, T] uint8 grey levels, row-major
  labels: np.ndarray        # [N] int32 class ids


@functools.lru_cache(maxsize=8)
def permutation(length: int) -> np.ndarray:
  """The fixed pixel order of the permuted tasks: position t reads pixel perm[t]."""
  return np.random.default_rng(PERMUTATION_SEED).permutation(length)


def _opts(name: str, task_config) -> dict:
  get = task_config.get if hasattr(task_config, 'get') else (lambda k, d: d)
  b = BENCHMARKS[name]
  defaults = dict(OPTIONS, dataset=b.dataset, image_column=b.image_column)
  o = {k: get(k, d) for k, d in defaults.items()}
  if o['dataset'] in (None, 'auto'):   # the task's own default
    o['dataset'] = b.dataset
  if o['image_column'] == 'auto':
    o['image_column'] = b.image_column
  if o['pixels'] not in PIXELS:
    raise ValueError(f'task.pixels={o["pixels"]!r}; allowed: {", ".join(PIXELS)}')
  if o['dataset'] == 'stdlib':
    raise ValueError(f"task.dataset='stdlib' is the text tasks' corpus; {name} reads a Hub id "
                     f"(default {b.dataset!r}), 'sklearn' (8x8 digits) or '' with task.path")
  text.check_revision(o, hub=o['dataset'] not in ('sklearn', ''))
  if o['dataset'] and o['path']:
    raise ValueError(f'task.path={o["path"]!r} is not read while task.dataset={o["dataset"]!r}; '
                     "set task.dataset='' to read the files, or drop task.path")
  if not 0 < o['eval_fraction'] < 1:
    raise ValueError(f'task.eval_fraction={o["eval_fraction"]!r}; allowed: a fraction in (0, 1)')
  if not 0 <= o['valid_fraction'] < 1:
    raise ValueError(f'task.valid_fraction={o["valid_fraction"]!r}; allowed: a fraction in '
                     '[0, 1)')
  return o


# ------------------------------------------------------------------------------- decoding
def _grey(value, side: int, where: str) -> np.ndarray:
  """One image value (PIL image, {'bytes','path'}, bytes, a path, nested pixel lists) ->
  [side * side] uint8 grey levels, row-major."""
  from PIL import Image
  if isinstance(value, dict):
    value = value.get('bytes') or value.get('path')
  if isinstance(value, (bytes, bytearray)):
    value = Image.open(io.BytesIO(value))
  elif isinstance(value, str):
    value = Image.open(value)
  elif not isinstance(value, Image.Image):
    a = np.asarray(value)
    if a.ndim == 1 and a.size == side * side:
      a = a.reshape(side, side)
    if a.size == 0 or a.dtype.kind not in 'iuf' or a.min() < 0 or a.max() > 255:
      raise ValueError(f'{where}: expected an image or pixel values 0..255, got '
                       f'{type(value).__name__} of shape {a.shape}')
    value = Image.fromarray(a.astype(np.uint8))
  g = np.asarray(value.convert('L'), np.uint8)
  if g.shape != (side, side):
    raise ValueError(f'{where} is {g.shape[1]}x{g.shape[0]} pixels; this task reads '
                     f'{side}x{side} images (T={side * side})')
  return g.reshape(-1)


def _read(ds, o: dict, side: int) -> tuple[np.ndarray, list]:
  """A datasets.Dataset -> (pixels [N, T] uint8, raw labels)."""
  text.check_column(ds, o['image_column'], 'task.image_column')
  text.check_column(ds, o['label_column'], 'task.label_column')
  src = o['dataset'] or o['path']
  x = np.empty((len(ds), side * side), np.uint8)
  for i, v in enumerate(ds[o['image_column']]):
    x[i] = _grey(v, side, f'image {i} of {src}')
  return x, list(ds[o['label_column']])


def _hub(dataset: str, split: str, revision: str = ''):
  try:
    return text.load_hub(dataset, None, split, revision)
  except OSError as e:  # text.load_hub's hint names the text tasks' offline corpus
    raise OSError(str(e).replace('the offline default task.dataset=stdlib',
                                 'the offline task digits (no download)')) from None


def _local(path: str):
  if not os.path.isdir(os.path.expanduser(path)):
    return text.load_local(path)
  try:
    return text._datasets().load_dataset('imagefolder', data_dir=os.path.expanduser(path),
                                         split='train')
  except Exception as e:  # keep to one line
    raise ValueError(f'cannot read the image folder task.path={path!r}: '
                     f'{str(e).splitlines()[0] if str(e) else type(e).__name__}') from None


def _digits() -> tuple[np.ndarray, np.ndarray]:
  from sklearn.datasets import load_digits
  d = load_digits()
  order = np.random.default_rng(DIGITS_ORDER_SEED).permutation(len(d.target))
  return np.rint(d.data[order] * (255 / 16)).astype(np.uint8), d.target[order]


@functools.lru_cache(maxsize=4)
def load(side: int, opts: tuple) -> tuple[Rows, Rows, Rows, int]:
  """(TRAIN rows, VALID rows, EVAL rows, number of classes) for the options."""
  o = dict(opts)
  if o['dataset'] == 'sklearn':
    if side != 8:
      raise ValueError(f"task.dataset='sklearn' holds 8x8 digits; this task reads {side}x{side} "
                       f"images: use the tasks digits/pdigits, or a Hub id or task.path")
    x, y = _digits()
    parts, held = [(x, list(y))], True
  elif o['dataset']:
    parts = [_read(_hub(o['dataset'], o['split'], o['revision']), o, side)]
    held = not o['eval_split']
    if not held:
      parts.append(_read(_hub(o['dataset'], o['eval_split'], o['revision']), o, side))
  else:
    if not o['path']:
      raise ValueError("task.dataset is empty and task.path is not set; give task.path=<files "
                       "or image folder>, a Hub id, or task.dataset=sklearn (8x8 digits)")
    parts, held = [_read(_local(o['path']), o, side)], True
  # Class ids: labels as text, numeric labels in numeric order.
  names = sorted({str(v) for _, y in parts for v in y}, key=lambda s: (len(s), s))
  index = {n: i for i, n in enumerate(names)}
  parts = [(x, np.array([index[str(v)] for v in y], np.int32)) for x, y in parts]
  if held:
    (x, y), = parts
    tr, ev = text.split_rows(len(y), o['eval_fraction'])
    parts = [(x[tr], y[tr]), (x[ev], y[ev])]
  (x_tr, y_tr), (x_ev, y_ev) = parts
  n_valid = int(round(len(y_tr) * o['valid_fraction']))
  train = Rows(x_tr[:len(y_tr) - n_valid], y_tr[:len(y_tr) - n_valid])
  valid = Rows(x_tr[len(y_tr) - n_valid:], y_tr[len(y_tr) - n_valid:])
  if not len(train.labels) or not len(y_ev):
    raise ValueError(f'the dataset ({o["dataset"] or o["path"]}) has no rows in its training '
                     f'or held-out split')
  if len(names) < 2:
    raise ValueError(f'task.label_column={o["label_column"]!r} has {len(names)} class; '
                     'classification needs at least 2')
  return train, valid, Rows(x_ev, y_ev), len(names)


def splits(name: str, task_config) -> tuple[Rows, Rows, Rows, int]:
  """(TRAIN, VALID, EVAL rows, number of classes) of task `name` with these options, loaded
  once per set of options that changes the data (not `pixels`)."""
  o = _opts(name, task_config)
  return load(BENCHMARKS[name].side, tuple(sorted((k, v) for k, v in o.items() if k != 'pixels')))


# ---------------------------------------------------------------------------------- tasks
def image_task(name: str, task_config) -> task.Task:
  """The Task `name` (a key of BENCHMARKS) with the options of config.task."""
  b = BENCHMARKS[name]
  o = _opts(name, task_config)
  length = b.side * b.side
  train, valid, ev, num_classes = splits(name, task_config)
  perm = permutation(length) if b.permuted else None
  tokens = o['pixels'] == 'tokens'
  h = text.unigram_entropy(train.labels, num_classes)
  by_split = {task.TRAIN: train, task.VALID: valid, task.EVAL: ev}

  def batch_fn(seed, step, batch_size, seq_len, split=task.TRAIN):
    if seq_len != length:
      raise ValueError(f'seq_len={seq_len}: task {name!r} reads {b.side}x{b.side} images, '
                       f'always T={length} pixels; use seq_len={length}')
    if split not in by_split:
      raise ValueError(f'split={split!r}; allowed: {task.TRAIN} (train), {task.EVAL} (eval), '
                       f'{task.VALID} (valid)')
    rows = by_split[split]
    n = len(rows.labels)
    if n == 0:
      raise ValueError(f'task {name!r} has no validation rows; set task.valid_fraction > 0')
    if split == task.TRAIN:
      idx = text.example_indices(seed, split, step, batch_size, n)
    else:  # held-out rows in order (the evaluation weighs the wrapped tail 0)
      idx = (step * batch_size + np.arange(batch_size)) % n
    x_BxT = rows.pixels[idx] if perm is None else rows.pixels[idx][:, perm]
    inputs = x_BxT.astype(np.int32) if tokens else (x_BxT.astype(np.float32) / 255)[..., None]
    return {'inputs': inputs, 'targets': rows.labels[idx]}

  return task.Task(
      name, 'last', 'xent', num_classes, 256 if tokens else 0, 0 if tokens else 1,
      make_batch=None, chance=lambda t: h,
      chance_doc=f'label-prior entropy of {num_classes} classes over {len(train.labels):,} '
                 f'training rows',
      min_seq_len=length, max_seq_len=length, batch_fn=batch_fn, fixed_len=True,
      held_out_size=lambda split, t: len(by_split[split].labels),
      train_majority=int(np.bincount(train.labels, minlength=num_classes).argmax()))


BUILDERS = {name: functools.partial(image_task, name) for name in BENCHMARKS}
