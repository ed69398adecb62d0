"""What generating costs: per-token latency, prefill time and the memory of the state
or KV cache of a per-step model, at a given context length.

Shape letters: B batch, L context length (positions already in the cache), V vocabulary.

`measure(name, gc, L, B)` builds a character-level model (vocabulary 256) and times:
  decode   one jitted sampling step (seqlab.sampling.make_step: decode + argmax, the
           cache donated) at positions L, L+1, ...: the median of `steps` tokens after
           `warmup`, each ended by block_until_ready. The cache is preallocated for
           L + warmup + steps positions and its position set to L: a step's work does not
           depend on the cached values, so the cache is not filled by a prefill first
           (the transformer's decode attends over its whole preallocated buffer, masked,
           so its cost is that of L cached positions, as generating at context L is).
  prefill  the prompt of L tokens in one parallel pass (the model's kernel), timed apart.
  rerun    the baseline 'transformer_rerun': no cache, every token re-runs the parallel
           forward over the whole context (what a cache saves).
  state    bytes of the recurrent state or KV cache (the cache's arrays, exactly).
A step slower than `max_step_s` is recorded as 'timeout'; so is one whose linear
extrapolation from the model's last point exceeds twice that (not run).
"""
from __future__ import annotations

import dataclasses
import statistics
import time

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab import models, sampling
from seqlab.measure import benchmark

RERUN = 'transformer_rerun'   # the no-cache baseline: a transformer with blocked attention
VOCAB = 256


@dataclasses.dataclass(frozen=True)
class GenerationConfig:
  hidden: int = 256          # model width / state size
  layers: int = 2            # stacked layers or blocks
  heads: int = 4             # attention heads
  steps: int = 16            # timed decode steps (median)
  warmup: int = 2            # untimed steps after compile
  prefill_reps: int = 2      # timed prefill calls (median)
  max_step_s: float = 2.0    # a decode step or prefill slower than this records 'timeout'
  dtype: str = 'float32'     # compute dtype (models.DTYPES); the cache is kept in it


def build(name: str, gc: GenerationConfig, max_len: int) -> models.SequenceModel:
  model, kernel = models.split_name('transformer:blocked' if name == RERUN else name)
  cfg = models.ModelConfig(name=model, kernel=kernel, hidden=gc.hidden, layers=gc.layers,
                           heads=gc.heads, vocab_size=VOCAB, num_outputs=VOCAB,
                           readout='per_step', max_len=max_len, dtype=gc.dtype)
  return models.build(cfg, 0)


def state_bytes(cache: dict) -> int:
  return int(sum(x.nbytes for x in jax.tree.leaves(cache['state'])))


def _timed(fn, reps: int, max_s: float) -> float:
  """Median seconds of `reps` calls of fn() (each blocks until its result is ready);
  TimeoutError as soon as one call takes longer than max_s."""
  return statistics.median(_samples(fn, reps, max_s))


def _samples(fn, reps: int, max_s: float) -> list[float]:
  """Seconds of each of `reps` calls of fn(); TimeoutError as in _timed."""
  times = []
  for _ in range(reps):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
    if times[-1] > max_s:
      raise TimeoutError(f'one call took {times[-1]:.2f} s > max_step_s={max_s}')
  return times


def time_decode(name: str, gc: GenerationConfig, context: int, batch: int) -> dict:
  """Per-token latency at `context` cached positions, and the cache's bytes."""
  max_len = context + gc.warmup + gc.steps + 1
  model = build(name, gc, max_len)
  graphdef, params = nnx.split(model)
  step = sampling.make_step(graphdef, temperature=0.0)
  cache = model.init_cache(batch, max_len, gc.dtype)
  nbytes = state_bytes(cache)
  cache['pos'] = jnp.asarray(context, jnp.int32)
  token_B, key = jnp.zeros((batch,), jnp.int32), jax.random.key(0)
  t0 = time.perf_counter()
  compiled = step.lower(params, token_B, cache, key).compile()
  compile_s = time.perf_counter() - t0
  state = {'token': token_B, 'cache': cache}

  def one_token():
    state['token'], state['cache'] = compiled(params, state['token'], state['cache'], key)
    return state['token']

  _timed(one_token, gc.warmup, gc.max_step_s)
  samples = _samples(one_token, gc.steps, gc.max_step_s)
  per_token_s = statistics.median(samples)
  return dict(decode_ms_per_token=1e3 * per_token_s, tokens_per_s=batch / per_token_s,
              # every timed token: the claims bootstrap their intervals from these
              decode_ms_samples=[float(f'{1e3 * x:.5g}') for x in samples],
              state_bytes=nbytes, state_bytes_per_sequence=nbytes // batch,
              compile_s=compile_s)


def time_prefill(name: str, gc: GenerationConfig, context: int, batch: int) -> dict:
  """The prompt of `context` tokens in one parallel pass into a fresh cache."""
  model = build(name, gc, context)
  graphdef, params = nnx.split(model)
  prefill = jax.jit(lambda p, x, c: models.merge(graphdef, p).prefill(x, c)[1])
  prompt_BxL = jax.random.randint(jax.random.key(1), (batch, context), 0, VOCAB)
  cache = model.init_cache(batch, context, gc.dtype)
  compiled = prefill.lower(params, prompt_BxL, cache).compile()
  jax.block_until_ready(compiled(params, prompt_BxL, cache))   # warm-up
  s = _timed(lambda: compiled(params, prompt_BxL, cache), gc.prefill_reps, gc.max_step_s)
  return dict(prefill_ms=1e3 * s, prefill_tokens_per_s=batch * context / s)


def time_rerun(gc: GenerationConfig, context: int, batch: int) -> dict:
  """The baseline without a cache: each new token runs the parallel forward over all
  `context` + 1 positions and keeps the last output."""
  model = build(RERUN, gc, context + 1)
  graphdef, params = nnx.split(model)
  forward = jax.jit(lambda p, x: jnp.argmax(models.merge(graphdef, p)(x)[:, -1], -1))
  tokens_BxL = jnp.zeros((batch, context + 1), jnp.int32)
  compiled = forward.lower(params, tokens_BxL).compile()
  _timed(lambda: compiled(params, tokens_BxL), 1, gc.max_step_s)
  samples = _samples(lambda: compiled(params, tokens_BxL), max(2, gc.steps // 4), gc.max_step_s)
  s = statistics.median(samples)
  return dict(decode_ms_per_token=1e3 * s, tokens_per_s=batch / s, state_bytes=0,
              decode_ms_samples=[float(f'{1e3 * x:.5g}') for x in samples],
              state_bytes_per_sequence=0)


def measure(name: str, gc: GenerationConfig, context: int, batch: int,
            last_decode=None, last_prefill=None) -> dict:
  """One results row: decode (or the rerun baseline) and prefill at (context, batch);
  status 'ok' or 'timeout'. last_*: (L, seconds) of this model's previous point, to
  predict a timeout without running."""
  row = dict(model=name, seq_len=context, batch=batch, hidden=gc.hidden, layers=gc.layers,
             device=str(jax.devices()[0].device_kind))
  why = benchmark.timeout_reason(last_decode, context, gc.max_step_s, 'L')
  if why:
    return dict(row, status='timeout', error=why)
  try:
    row.update(time_rerun(gc, context, batch) if name == RERUN else
               time_decode(name, gc, context, batch))
  except TimeoutError as e:
    return dict(row, status='timeout', error=str(e))
  if name != RERUN:
    why = benchmark.timeout_reason(last_prefill, context, gc.max_step_s, 'L')
    try:
      if why:
        raise TimeoutError(why)
      row.update(time_prefill(name, gc, context, batch))
    except TimeoutError as e:
      row['prefill_error'] = str(e)
  return dict(row, status='ok')
