"""Synthetic long-range tasks, generated on the fly from (seed, split, step).

Every task is a value in TASKS with: what the model reads (tokens or features),
what it predicts ('per_step' or 'last'), its loss, its chance level, and
`batch(seed, step, batch_size, seq_len, split)` -> dict of numpy arrays:
  inputs  [B, L] int32 or [B, L, input_dim] float32   (L = input_len(seq_len))
  targets [B, L] int32 (per_step) | [B] int32 (class) | [B] float32 (regression)
  mask    [B, L] float32 for per_step tasks (1 where the loss counts)
The batch of step s is a pure function of (seed, split, s), so runs resume exactly
and any host can make its own shard by index.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

TRAIN, EVAL = 0, 1


def rng_for(seed: int, split: int, step: int) -> np.random.Generator:
  return np.random.default_rng([seed, split, step])


@dataclasses.dataclass(frozen=True)
class Task:
  name: str
  readout: str                         # 'per_step' or 'last'
  loss_type: str                       # 'xent' or 'mse'
  num_outputs: int                     # classes / vocabulary / 1
  vocab_size: int                      # token vocabulary, 0 for real-valued inputs
  input_dim: int                       # real-valued input width (unused for tokens)
  make_batch: Callable                 # (rng, batch_size, seq_len) -> dict
  chance: Callable[[int], float]       # seq_len -> loss of the best input-blind guess
  chance_doc: str                      # how the chance level is derived
  min_seq_len: int = 2
  extra_len: int = 0                   # input length = seq_len + extra_len
  # Data-backed tasks (seqlab.text_tasks) index their data by (seed, step) themselves:
  # batch_fn(seed, step, batch_size, seq_len, split) -> dict, used instead of make_batch.
  batch_fn: Callable | None = None
  max_seq_len: int = 0                 # longest usable seq_len (0: any), e.g. the text's length

  def input_len(self, seq_len: int) -> int:
    return seq_len + self.extra_len

  def chance_loss(self, seq_len: int) -> float:
    return float(self.chance(seq_len))

  def batch(self, seed: int, step: int, batch_size: int, seq_len: int, split: int = TRAIN):
    if self.batch_fn is not None:
      return self.batch_fn(seed, step, batch_size, seq_len, split)
    return self.make_batch(rng_for(seed, split, step), batch_size, seq_len)


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


# Tasks that need data or options (text, ListOps) are built from config.task by a
# function named here as 'module:function' and imported only when used.
TASK_BUILDERS: dict[str, str] = {
    'charlm': 'seqlab.text_tasks:charlm_task',
    'textclf': 'seqlab.text_tasks:textclf_task',
    'listops': 'seqlab.text_tasks:listops_task',
}


def task_names() -> list[str]:
  return list(TASKS) + list(TASK_BUILDERS)


def build(task_config) -> Task:
  """The Task for config.task (its `name` plus any options a builder reads)."""
  name = task_config.name if hasattr(task_config, 'name') else task_config
  if name in TASKS:
    return TASKS[name]
  if name in TASK_BUILDERS:
    import importlib
    module, fn = TASK_BUILDERS[name].split(':')
    return getattr(importlib.import_module(module), fn)(task_config)
  raise ValueError(f'unknown task {name!r}; allowed: {", ".join(task_names())}')


# -------------------------------------------------------------------------------- loss
def loss_and_metrics(task: Task, outputs, batch) -> tuple[jax.Array, dict]:
  """Mean loss and metrics for model outputs [B, O] or [B, L, O]. Accuracy is NaN
  (reported as null) where undefined (regression)."""
  if task.loss_type == 'mse':
    err = outputs[..., 0].astype(jnp.float32) - batch['targets']
    loss = jnp.mean(err ** 2)
    return loss, {'loss': loss, 'accuracy': jnp.float32(jnp.nan)}
  logits = outputs.astype(jnp.float32)
  targets = batch['targets']
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  mask = batch.get('mask')
  if mask is None:
    return nll.mean(), {'loss': nll.mean(), 'accuracy': correct.mean()}
  denom = jnp.maximum(mask.sum(), 1.0)
  loss = (nll * mask).sum() / denom
  return loss, {'loss': loss, 'accuracy': (correct * mask).sum() / denom}
