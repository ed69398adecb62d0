"""The Task record every task is, and the loss every task uses.

A task is a value with: what the model reads (tokens or features),
what it predicts ('per_step' or 'last'), its loss, its chance level, and
`batch(seed, step, batch_size, seq_len, split)` -> dict of numpy arrays:
  inputs  [B, L] int32 or [B, L, input_dim] float32   (L = input_len(seq_len))
  targets [B, L] int32 (per_step) | [B] int32 (class) | [B] float32 (regression)
  mask    [B, L] float32 for per_step tasks (1 where the loss counts)
Splits: TRAIN, EVAL (reported) and VALID (for choosing the lr and the best checkpoint;
apart from EVAL). Every task has all three. The batch of step s is a pure function of
(seed, split, s), so runs resume exactly and any host can make its own shard by index.
A finite held-out split (text, images) says its size (`held_out_size`): batch i of it
holds its examples [i B, (i + 1) B) (wrapping past the end), so the evaluation reads
ceil(N / B) batches and weighs the wrapped tail 0: every example once, none twice.
Generated tasks draw fresh held-out examples (train.eval_examples of them).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

TRAIN, EVAL = 0, 1
VALID = 2   # held-out data for choosing settings (the lr); EVAL's numbers are reported


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
  # Data-backed tasks (seqlab.data.text_tasks) index their data by (seed, step) themselves:
  # batch_fn(seed, step, batch_size, seq_len, split) -> dict, used instead of make_batch.
  batch_fn: Callable | None = None
  max_seq_len: int = 0                 # longest usable seq_len (0: any), e.g. the text's length
  # (split, seq_len) -> the number of examples of a finite held-out split (VALID, EVAL);
  # None: generated data, as many fresh examples as asked for.
  held_out_size: Callable[[int, int], int] | None = None
  # Classification on data: the most common class of the TRAIN split (the baseline of a
  # predictor that learned only the label prior); None for generated tasks.
  train_majority: int | None = None
  fixed_len: bool = False              # the data have one length (images): seq_len must equal it

  @property
  def classification(self) -> bool:
    """One class per sequence, read from its end (recall, listops, textclf, images)."""
    return self.readout == 'last' and self.loss_type == 'xent'

  def input_len(self, seq_len: int) -> int:
    return seq_len + self.extra_len

  def chance_loss(self, seq_len: int) -> float:
    return float(self.chance(seq_len))

  def batch(self, seed: int, step: int, batch_size: int, seq_len: int, split: int = TRAIN):
    if self.batch_fn is not None:
      return self.batch_fn(seed, step, batch_size, seq_len, split)
    return self.make_batch(rng_for(seed, split, step), batch_size, seq_len)


# -------------------------------------------------------------------------------- loss
def per_example(task: Task, outputs, batch) -> dict:
  """Each example's summed loss, its number of scored positions and of correct ones
  ([B] float32 each; 1 position per example for a 'last' readout), and its class
  (targets, [B] int32, for classification): what an evaluation needs for a mean, its
  standard error and the baselines of the exact examples scored."""
  if task.loss_type == 'mse':
    err = outputs[..., 0].astype(jnp.float32) - batch['targets']
    ones = jnp.ones(err.shape, jnp.float32)
    return {'loss_sum': err ** 2, 'count': ones, 'correct': jnp.zeros_like(ones)}
  logits = outputs.astype(jnp.float32)
  targets = batch['targets']
  nll = -jnp.take_along_axis(jax.nn.log_softmax(logits), targets[..., None], axis=-1)[..., 0]
  correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
  mask = batch.get('mask')
  if mask is None and nll.ndim == 1:
    return {'loss_sum': nll, 'count': jnp.ones_like(nll), 'correct': correct}
  mask = jnp.ones_like(nll) if mask is None else mask
  return {'loss_sum': (nll * mask).sum(-1), 'count': mask.sum(-1),
          'correct': (correct * mask).sum(-1)}


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
