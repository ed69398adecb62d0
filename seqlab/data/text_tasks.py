"""Task builders for real text and ListOps: 'charlm', 'textclf', 'listops'.

Registered in seqlab.data.tasks.TASK_BUILDERS; each reads its options from config.task:
  dataset       'stdlib' (offline default), a Hub id, or '' to read task.path
  path          local file or glob (.txt, .csv, .jsonl, .parquet) when dataset=''
  config_name   Hub config (e.g. 'wikitext-2-raw-v1')
  text_column, label_column, split, eval_split ('' -> every 10th row held out)
  tokenizer     'byte' or 'char'
Offline defaults (no network, every CPython carries them):
  charlm   the interpreter's top-level stdlib *.py files, every 10th file held out (EVAL)
           and the file before each of those the VALID split.
  textclf  which of 4 stdlib packages (asyncio, email, unittest, xml) a paragraph of source
           comes from, every 5th file held out, less any paragraph that also occurs in a
           training file: real text of varied length, a balanced-ish 4-way topic problem
           that needs no download, and one no bag-of-bytes baseline solves.
Every task has a VALID split apart from EVAL (settings and the best checkpoint are chosen
on it): charlm as above, or every 10th training document (the last tenth of one document's
training part); textclf every 10th training row (stdlib: less paragraphs also in TRAIN).
"""
from __future__ import annotations

import functools
import glob
import math
import os

import numpy as np

from seqlab.data import listops, task, text

CLF_PACKAGES = ('asyncio', 'email', 'unittest', 'xml')
OPTIONS = dict(dataset='stdlib', path='', config_name='', text_column='text',
               label_column='label', split='train', eval_split='', tokenizer='byte',
               eval_fraction=0.1, revision='')


def _opts(task_config) -> tuple:
  get = task_config.get if hasattr(task_config, 'get') else (lambda k, d: d)
  o = {k: get(k, d) for k, d in OPTIONS.items()}
  text.check_revision(o, hub=o['dataset'] not in ('stdlib', ''))
  return tuple(o.items())


# ------------------------------------------------------------------------------ sources
def _train_eval_datasets(o: dict, need_label: bool):
  """(train, eval) datasets.Dataset for the options; validates columns."""
  if o['dataset'] and o['dataset'] != 'stdlib':
    train = text.load_hub(o['dataset'], o['config_name'], o['split'], o['revision'])
    ev = (text.load_hub(o['dataset'], o['config_name'], o['eval_split'], o['revision'])
          if o['eval_split'] else None)
  elif not o['dataset']:
    if not o['path']:
      raise ValueError('task.dataset is empty and task.path is not set; give task.path=<file '
                       'or glob> or task.dataset=<Hub id> or task.dataset=stdlib')
    train, ev = text.load_local(o['path']), None
  else:
    raise AssertionError('stdlib is built by the callers')
  for ds in (train, ev):
    if ds is None:
      continue
    text.check_column(ds, o['text_column'], 'task.text_column')
    if need_label:
      text.check_column(ds, o['label_column'], 'task.label_column')
  if len(train) == 0:
    raise ValueError(f'the dataset ({o["dataset"] or o["path"]}) is empty')
  if ev is None and len(train) == 1 and not need_label:
    # One document (e.g. tiny_shakespeare): hold out its last eval_fraction of characters.
    doc = train[0][o['text_column']] or ''
    cut = int(len(doc) * (1.0 - o['eval_fraction']))
    return {o['text_column']: [doc[:cut]]}, {o['text_column']: [doc[cut:]]}
  if ev is None:
    tr_idx, ev_idx = text.split_rows(len(train), o['eval_fraction'])
    train, ev = train.select(tr_idx), train.select(ev_idx)
  return train, ev


def _read(path: str) -> str:
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read()


VALID_EVERY = 10    # VALID: every 10th training document / row (text.split_rows)


@functools.lru_cache(maxsize=4)
def lm_streams(opts: tuple):
  """(tokenizer, train LMStream, eval LMStream, valid LMStream) for the options."""
  o = dict(opts)
  if o['dataset'] == 'stdlib':
    files = text.stdlib_files()
    train_texts = [_read(f) for i, f in enumerate(files) if i % 10 not in (8, 9)]
    valid_texts = [_read(f) for i, f in enumerate(files) if i % 10 == 8]
    eval_texts = [_read(f) for i, f in enumerate(files) if i % 10 == 9]
  else:
    train, ev = _train_eval_datasets(o, need_label=False)
    train_texts, eval_texts = list(train[o['text_column']]), list(ev[o['text_column']])
    train_texts, valid_texts = _valid_split_texts([t for t in train_texts if t])
  train_texts = [t for t in train_texts if t]
  valid_texts = [t for t in valid_texts if t]
  eval_texts = [t for t in eval_texts if t]
  if not train_texts or not eval_texts or not valid_texts:
    raise ValueError(f'the dataset ({o["dataset"] or o["path"]}) has no text in its training, '
                     'validation or held-out split')
  tok = text.make_tokenizer(o['tokenizer'], train_texts)
  # Documents are joined with a newline: the LM reads one stream, as in char-rnn.
  streams = [text.LMStream(tok.encode('\n'.join(t)))
             for t in (train_texts, eval_texts, valid_texts)]
  return tok, streams[0], streams[1], streams[2]


def _valid_split_texts(texts: list) -> tuple[list, list]:
  """(train, valid) documents: every VALID_EVERY-th document is VALID; one document is
  cut, its last tenth VALID."""
  if len(texts) >= 2:
    tr, va = text.split_rows(len(texts), 1.0 / VALID_EVERY)
    return [texts[i] for i in tr], [texts[i] for i in va]
  doc = texts[0] if texts else ''
  cut = int(len(doc) * (1.0 - 1.0 / VALID_EVERY))
  return [doc[:cut]], [doc[cut:]]


def tokenizer(task_config) -> text.Tokenizer:
  """The tokenizer a charlm task built from these options uses (to encode a prompt and
  decode what a model generates)."""
  return lm_streams(_opts(task_config))[0]


def _held_out_rows(train_texts, train_labels, held_texts, held_labels):
  """The held-out rows that do not also occur in training (boilerplate such as licence
  headers repeats across files: such a row would be scored on text the model trained on)."""
  seen = set(train_texts)
  kept = [j for j, p in enumerate(held_texts) if p not in seen]
  return [held_texts[j] for j in kept], [held_labels[j] for j in kept]


@functools.lru_cache(maxsize=4)
def clf_rows(opts: tuple):
  """(tokenizer, train rows, eval rows, valid rows, class names) for the options."""
  o = dict(opts)
  if o['dataset'] == 'stdlib':
    root = os.path.dirname(text.stdlib_files()[0])
    split_texts = ([], [])
    split_labels = ([], [])
    for label, pkg in enumerate(CLF_PACKAGES):
      files = sorted(f for f in glob.glob(os.path.join(root, pkg, '**', '*.py'), recursive=True)
                     if f'{os.sep}test' not in f[len(root):])
      for i, f in enumerate(files):
        # A row is a blank-line-separated paragraph of source with some substance.
        paras = [p for p in _read(f).split('\n\n') if len(p.strip()) >= 64]
        split_texts[i % 5 == 4].extend(paras)
        split_labels[i % 5 == 4].extend([label] * len(paras))
    names = list(CLF_PACKAGES)
    texts, raw = list(split_texts), list(split_labels)
  else:
    train, ev = _train_eval_datasets(o, need_label=True)
    texts = [list(train[o['text_column']]), list(ev[o['text_column']])]
    raw = [list(train[o['label_column']]), list(ev[o['label_column']])]
    names = sorted({str(v) for v in raw[0]} | {str(v) for v in raw[1]},
                   key=lambda s: (len(s), s))  # numeric labels in numeric order
    index = {n: i for i, n in enumerate(names)}
    raw = [[index[str(v)] for v in r] for r in raw]
  # VALID: every VALID_EVERY-th training row. The stdlib corpus's held-out paragraphs
  # (VALID, EVAL) that also occur in training are dropped (18 of 744 were shared
  # boilerplate); a user's data set is kept as it is (its test split is the benchmark's).
  if len(raw[0]) >= 2:
    tr, va = text.split_rows(len(raw[0]), 1.0 / VALID_EVERY)
    texts.append([texts[0][i] for i in va])
    raw.append([raw[0][i] for i in va])
    texts[0], raw[0] = [texts[0][i] for i in tr], [raw[0][i] for i in tr]
  else:
    texts.append([])
    raw.append([])
  if o['dataset'] == 'stdlib':
    for k in (1, 2):
      texts[k], raw[k] = _held_out_rows(texts[0], raw[0], texts[k], raw[k])
  labels = [np.array(l, np.int32) for l in raw]
  if any(len(l) == 0 for l in labels):
    raise ValueError('the classification dataset has no rows in its training, validation or '
                     'held-out split')
  if len(names) < 2:
    raise ValueError(f'task.label_column={o["label_column"]!r} has {len(names)} class; '
                     'classification needs at least 2')
  tok = text.make_tokenizer(o['tokenizer'], [t for t in texts[0] if t])
  rows = [text.ClassificationRows(tuple(tok.encode(t or '') for t in ts), l)
          for ts, l in zip(texts, labels)]
  return tok, rows[0], rows[1], rows[2], names


def _label_entropy(labels: np.ndarray) -> float:
  p = np.bincount(labels) / len(labels)
  p = p[p > 0]
  return float(-(p * np.log(p)).sum())


# -------------------------------------------------------------------------------- tasks
def charlm_task(task_config) -> task.Task:
  """Next-character prediction at every step; chance = unigram entropy (nats/token) of the
  training split, so loss / ln 2 is bits per character (per byte with tokenizer=byte)."""
  tok, train, ev, valid = lm_streams(_opts(task_config))
  h = text.unigram_entropy(train.tokens, tok.vocab_size)
  by_split = {task.TRAIN: train, task.EVAL: ev, task.VALID: valid}

  def batch_fn(seed, step, batch_size, seq_len, split=task.TRAIN):
    return by_split[split].batch(seed, split, step, batch_size, seq_len)

  return task.Task('charlm', 'per_step', 'xent', tok.vocab_size, tok.vocab_size, 0,
                    make_batch=None, chance=lambda t: h,
                    chance_doc=f'unigram entropy of the training split, {h / math.log(2):.3f} '
                               f'bits/char ({len(train.tokens):,} train tokens)',
                    min_seq_len=2, batch_fn=batch_fn,
                    held_out_size=lambda split, t: by_split[split].num_windows(t),
                    max_seq_len=min(len(train.tokens), len(ev.tokens),
                                    len(valid.tokens)) - 1)


def textclf_task(task_config) -> task.Task:
  """Class from the final state (recurrent, left-padded) or CLS/mean pool (transformer).

  The transformer has no attention mask: its CLS token and mean pool also see the
  left padding, an imperfection shared with LRA's simplest baselines."""
  tok, train, ev, valid, names = clf_rows(_opts(task_config))
  h = _label_entropy(train.labels)
  by_split = {task.TRAIN: train, task.EVAL: ev, task.VALID: valid}

  def batch_fn(seed, step, batch_size, seq_len, split=task.TRAIN):
    return by_split[split].batch(seed, split, step, batch_size, seq_len)

  return task.Task('textclf', 'last', 'xent', len(names), tok.vocab_size, 0, make_batch=None,
                    chance=lambda t: h,
                    chance_doc=f'class prior entropy of {len(names)} classes over the '
                               f'training rows',
                    min_seq_len=1, batch_fn=batch_fn,
                    held_out_size=lambda split, t: len(by_split[split].labels),
                    train_majority=int(np.bincount(train.labels).argmax()))


@functools.lru_cache(maxsize=16)
def listops_reference_labels(seq_len: int) -> np.ndarray:
  """Labels of 2048 fixed expressions at this length: the sample behind ListOps' chance
  level in training logs (the baselines a result is judged by come from the examples it
  was scored on: seqlab.train.evaluate)."""
  return listops.make_batch(np.random.default_rng([7, 7, seq_len]), 2048, seq_len)['targets']


def listops_label_entropy(seq_len: int) -> float:
  """Entropy of the label distribution at this length (the fixed sample)."""
  return _label_entropy(listops_reference_labels(seq_len))


def listops_task(task_config) -> task.Task:
  del task_config
  return task.Task('listops', 'last', 'xent', listops.NUM_CLASSES, len(listops.VOCAB), 0,
                    make_batch=listops.make_batch, chance=listops_label_entropy,
                    chance_doc='label-prior entropy (2048 sampled expressions)', min_seq_len=4)
