"""Synthetic long-range tasks, generated on the fly from (seed, split, step): adding,
copy memory, first-token recall and k-back. Each batch is a pure function of
(seed, split, step) (task.rng_for), so runs resume exactly and need no files.
"""
from __future__ import annotations

import math

import numpy as np

from seqlab.data.task import Task


# ------------------------------------------------------------------------------ adding
def adding_batch(rng, b, t):
  """Hochreiter & Schmidhuber (1997): sum the two values whose marker is 1.

  One marker falls in the first half, one in the second, so the model must carry a
  value across at least T/2 steps. Predicting the mean (1.0) gives MSE
  Var(u1 + u2) = 2/12 = 1/6.
  """
  values = rng.uniform(0.0, 1.0, size=(b, t)).astype(np.float32)
  first = rng.integers(0, t // 2, size=b)
  second = rng.integers(t // 2, t, size=b)
  markers = np.zeros((b, t), np.float32)
  markers[np.arange(b), first] = 1.0
  markers[np.arange(b), second] = 1.0
  target = values[np.arange(b), first] + values[np.arange(b), second]
  return {'inputs': np.stack([values, markers], axis=-1), 'targets': target.astype(np.float32)}


# -------------------------------------------------------------------------------- copy
COPY_SYMBOLS, COPY_LEN = 8, 10


def copy_batch(rng, b, t):
  """Copy memory as in Bai, Kolter & Koltun (2018) (TCN repository's generator).

  Input: 10 symbols from {1..8}, T-1 blanks (0), then 11 markers (9); the target is
  blank everywhere except the last 10 steps, which must repeat the 10 symbols.
  Length T + 20. A memoryless model predicts blanks exactly and guesses the
  10 symbols uniformly: cross-entropy 10 ln 8 / (T + 20).
  """
  seq = rng.integers(1, COPY_SYMBOLS + 1, size=(b, COPY_LEN))
  x = np.concatenate([seq, np.zeros((b, t - 1), np.int64),
                      np.full((b, COPY_LEN + 1), COPY_SYMBOLS + 1)], axis=1)
  y = np.concatenate([np.zeros((b, COPY_LEN + t), np.int64), seq], axis=1)
  return {'inputs': x.astype(np.int32), 'targets': y.astype(np.int32),
          'mask': np.ones(x.shape, np.float32)}


# ---------------------------------------------------------------------- first-token recall
RECALL_CLASSES = 8


def recall_batch(rng, b, t):
  """Classify the FIRST token from the final state; the other T-1 tokens are
  uniform distractors from the same alphabet, so chance is 1/K (loss ln K)."""
  x = rng.integers(0, RECALL_CLASSES, size=(b, t))
  return {'inputs': x.astype(np.int32), 'targets': x[:, 0].astype(np.int32)}


# ------------------------------------------------------------------------------ k-back
KBACK_VOCAB, KBACK_K = 8, 16


def kback_batch(rng, b, t):
  """Per-step: predict the token K steps back (y_t = x_{t-K}); t < K is masked.

  Tokens are i.i.d. uniform, so a model without a K-step memory scores ln V.
  """
  x = rng.integers(0, KBACK_VOCAB, size=(b, t))
  y = np.zeros_like(x)
  y[:, KBACK_K:] = x[:, :-KBACK_K]
  mask = np.zeros((b, t), np.float32)
  mask[:, KBACK_K:] = 1.0
  return {'inputs': x.astype(np.int32), 'targets': y.astype(np.int32), 'mask': mask}


TASKS: dict[str, Task] = {
    'adding': Task('adding', 'last', 'mse', 1, 0, 2, adding_batch, lambda t: 1.0 / 6.0,
                   'MSE of predicting the mean sum, Var(u1+u2) = 1/6', min_seq_len=2),
    'copy': Task('copy', 'per_step', 'xent', COPY_SYMBOLS + 2, COPY_SYMBOLS + 2, 0, copy_batch,
                 lambda t: COPY_LEN * math.log(COPY_SYMBOLS) / (t + 2 * COPY_LEN),
                 'memoryless: 10 ln 8 / (T + 20)', min_seq_len=1, extra_len=2 * COPY_LEN),
    'recall': Task('recall', 'last', 'xent', RECALL_CLASSES, RECALL_CLASSES, 0, recall_batch,
                   lambda t: math.log(RECALL_CLASSES), 'uniform guess: ln K, K = 8',
                   min_seq_len=2),
    'kback': Task('kback', 'per_step', 'xent', KBACK_VOCAB, KBACK_VOCAB, 0, kback_batch,
                  lambda t: math.log(KBACK_VOCAB), f'uniform guess: ln V, V = {KBACK_VOCAB}',
                  min_seq_len=KBACK_K + 1),
}


