"""Generating tokens from a per-step model: prefill the prompt once, then one jitted
decode step per token (seqlab.models.SequenceModel.decode), never re-running the prefix.

Token t is drawn with the key fold_in(key(seed), t), so a (model, prompt, temperature,
seed) always gives the same text. Temperature 0 is greedy (argmax).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab import models

Array = jax.Array


def next_token(logits_BxV: Array, key: Array, temperature: float) -> Array:
  """[B] int32: argmax at temperature 0, else a draw from softmax(logits / temperature)."""
  if temperature == 0:
    return jnp.argmax(logits_BxV, axis=-1).astype(jnp.int32)
  return jax.random.categorical(key, logits_BxV.astype(jnp.float32) / temperature).astype(jnp.int32)


def make_step(graphdef, temperature: float):
  """A jitted (params, token [B], cache, key) -> (next token [B], cache) step; the cache
  is donated, so its buffers are reused in place."""
  def step(params, token_B, cache, key):
    logits_BxV, cache = models.merge(graphdef, params).decode(token_B, cache)
    return next_token(logits_BxV, key, temperature), cache

  return jax.jit(step, donate_argnums=2)


def sample_text(point_dir: str, prompt: str, steps: int = 200, temperature: float = 1.0,
                seed: int = 0, checkpoint: str = 'best') -> str:
  """Text a finished character-level LM point (task charlm) generates after `prompt`:
  its best (or latest) checkpoint through seqlab.load, its own tokenizer."""
  from seqlab.data import text_tasks
  from seqlab.evaluate import LoadError, load
  model, _, config = load(point_dir, checkpoint)
  if config.task.name != 'charlm':
    raise LoadError(f'{point_dir} was trained on task {config.task.name!r}; sampling needs a '
                    f'charlm point (a per-step language model)')
  if not prompt:
    raise LoadError('the prompt is empty; give at least one character')
  tok = text_tasks.tokenizer(config.task)
  ids = generate(model, tok.encode(prompt)[None], steps, temperature, seed)
  return tok.decode(ids[0])


def generate(model, prompt_BxT, steps: int, temperature: float = 1.0, seed: int = 0) -> np.ndarray:
  """The prompt [B, T] continued by `steps` tokens: [B, steps] int32."""
  prompt_BxT = jnp.asarray(prompt_BxT, jnp.int32)
  b, t = prompt_BxT.shape
  key = jax.random.key(seed)
  cache = model.init_cache(b, t + steps)
  logits_BxTxV, cache = model.prefill(prompt_BxT, cache)
  token_B = next_token(logits_BxTxV[:, -1], jax.random.fold_in(key, 0), temperature)
  graphdef, params = nnx.split(model)
  step = make_step(graphdef, temperature)
  out = [token_B]
  for i in range(1, steps):
    token_B, cache = step(params, token_B, cache, jax.random.fold_in(key, i))
    out.append(token_B)
  return np.asarray(jnp.stack(out, axis=1))
