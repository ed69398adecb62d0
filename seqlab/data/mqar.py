"""Multi-query associative recall (MQAR; Arora, Eyuboglu et al. 2023, "Zoology: Measuring
and Improving Recall in Efficient Language Models", Sec. 3; the generator of their public
repository, zoology/data/multiquery_ar.py).

A sequence of T tokens starts with P key-value pairs k_1 v_1 ... k_P v_P (keys distinct,
drawn from the lower half of the vocabulary without 0; values from the upper half, distinct),
then a query region where each key appears once more at an even offset; every other
query-region position is 0 (Zoology's Figure-2 configs: random_non_queries=False) or, with
random_non_queries, a uniform token. At a query the model must emit the value bound to
that key; the loss counts only there (mask). Query offsets follow Zoology's power law
p(gap = i) ~ i^(a-1), a = power_a = 0.01, over the (T - 2P)/2 even slots, drawn without
replacement (Gumbel top-k, the same law as their sequential np.random.choice).

    key   val  key  val                  query                  query
    2     8    4    7    0    0    4    0    0    0    0    0    2    0    0     inputs
    .     .    .    .    .    .    7    .    .    .    .    .    8    .    .     targets (mask 1)

An input-blind model that knows where the queries are guesses among V/2 values:
chance = ln(V/2) (ln of the number of possible values).
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from seqlab.data.task import Task

DEFAULTS = dict(num_pairs=8, vocab_size=8192, power_a=0.01, random_non_queries=False)


@dataclasses.dataclass(frozen=True)
class MQARTask(Task):
  num_pairs: int = 8                   # P: key-value pairs per sequence, each queried once
  power_a: float = 0.01                # query-gap power law p(i) ~ i^(a-1)
  random_non_queries: bool = False     # fill non-query positions with uniform tokens


def mqar_batch(rng: np.random.Generator, b: int, t: int, num_pairs: int, vocab_size: int,
               power_a: float = 0.01, random_non_queries: bool = False) -> dict:
  """inputs [B, T] int32, targets [B, T] int32 (the value at each query, else 0),
  mask [B, T] float32 (1 at the P query positions)."""
  p, half = num_pairs, vocab_size // 2
  context = 2 * p
  space = (t - context) // 2                  # even query slots after the pairs
  # P distinct keys from 1..half-1 and P distinct values from half..V-1 per example:
  # the first P of a uniform random permutation (argsort of uniforms).
  keys = np.argsort(rng.random((b, half - 1)), axis=1)[:, :p] + 1
  values = np.argsort(rng.random((b, vocab_size - half)), axis=1)[:, :p] + half
  # Gap i (0-based slot) with weight (i+1)^(a-1), P slots without replacement: Gumbel top-k.
  log_w = (power_a - 1.0) * np.log(np.arange(1, space + 1))
  scores = log_w[None] + rng.gumbel(size=(b, space))
  gaps = np.argsort(-scores, axis=1)[:, :p]
  x = np.zeros((b, t), np.int64)
  x[:, 0:context:2] = keys
  x[:, 1:context:2] = values
  query_pos = context + 2 * gaps              # [B, P]: where key j is asked again
  rows = np.arange(b)[:, None]
  x[rows, query_pos] = keys
  y = np.zeros((b, t), np.int64)
  y[rows, query_pos] = values
  mask = np.zeros((b, t), np.float32)
  mask[rows, query_pos] = 1.0
  if random_non_queries:
    fill = rng.integers(0, vocab_size, size=(b, t))
    free = np.ones((b, t), bool)
    free[:, :context] = False
    free[rows, query_pos] = False
    x = np.where(free, fill, x)
  return {'inputs': x.astype(np.int32), 'targets': y.astype(np.int32), 'mask': mask}


def _option(task_config, key):
  get = task_config.get if hasattr(task_config, 'get') else (lambda k, d: d)
  return get(key, DEFAULTS[key])


def mqar_task(task_config) -> MQARTask:
  """MQAR with config.task.num_pairs (P), .vocab_size (V), .power_a and
  .random_non_queries; defaults DEFAULTS (Zoology: V = 8192). Needs T >= 4P."""
  p = int(_option(task_config, 'num_pairs'))
  v = int(_option(task_config, 'vocab_size'))
  a = float(_option(task_config, 'power_a'))
  noise = bool(_option(task_config, 'random_non_queries'))
  if p < 1:
    raise ValueError(f'task.num_pairs={p} must be >= 1')
  if v // 2 - 1 < p:
    raise ValueError(f'task.vocab_size={v} holds only {v // 2 - 1} keys (1..V/2-1) for '
                     f'task.num_pairs={p}; use vocab_size >= {2 * p + 2}')
  if not 0.0 < a <= 1.0:
    raise ValueError(f'task.power_a={a} must be in (0, 1] (1: uniform query gaps)')

  def make_batch(rng, b, t):
    return mqar_batch(rng, b, t, p, v, a, noise)

  n_values = v - v // 2
  return MQARTask('mqar', 'per_step', 'xent', v, v, 0, make_batch,
                  chance=lambda t: math.log(n_values),
                  chance_doc=f'uniform guess among the V/2 values: ln {n_values}',
                  min_seq_len=4 * p, num_pairs=p, power_a=a, random_non_queries=noise)
