"""Decoding: for every model, prefill + token-by-token decode give the parallel
forward's outputs (the KV cache and the recurrent states carry exactly what the
parallel pass computes), jitted through nnx.split/merge, and learned positions refuse a
context longer than they have."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab import models

VOCAB, B, T, PROMPT = 11, 2, 12, 5
CASES = [('rnn', {}), ('lstm', {}), ('lstm', {'kernel': 'fused'}), ('gru', {}),
         ('gru', {'kernel': 'fused'}), ('lru', {}), ('lru', {'kernel': 'sequential'}),
         ('mingru', {}), ('transformer', {}), ('transformer', {'positions': 'learned'}),
         ('transformer', {'kernel': 'blocked'})]


def build(name, **kw):
  kw = {'max_len': T, **kw}
  cfg = models.ModelConfig(name=name, hidden=8, layers=2, heads=2, vocab_size=VOCAB,
                           num_outputs=VOCAB, readout='per_step', **kw)
  return models.build(cfg, 0)


@pytest.mark.parametrize('name,kw', CASES, ids=[f'{n}-{"-".join(kw.values()) or "default"}'
                                                for n, kw in CASES])
def test_prefill_then_decode_equals_the_parallel_forward(name, kw):
  model = build(name, **kw)
  tokens = jax.random.randint(jax.random.key(1), (B, T), 0, VOCAB)
  full_BxTxO = model(tokens)
  cache = model.init_cache(B, T)
  out_BxPxO, cache = model.prefill(tokens[:, :PROMPT], cache)
  np.testing.assert_allclose(out_BxPxO, full_BxTxO[:, :PROMPT], rtol=1e-5, atol=1e-5)
  graphdef, state = nnx.split(model)
  decode = jax.jit(lambda s, x, c: nnx.merge(graphdef, s).decode(x, c))
  for t in range(PROMPT, T):
    out_BxO, cache = decode(state, tokens[:, t], cache)
    np.testing.assert_allclose(out_BxO, full_BxTxO[:, t], rtol=1e-5, atol=1e-5)
  assert int(cache['pos']) == T


@pytest.mark.parametrize('name', ['lstm', 'mingru', 'transformer'])
def test_decoding_from_the_first_token_equals_the_parallel_forward(name):
  model = build(name)
  tokens = jax.random.randint(jax.random.key(2), (B, T), 0, VOCAB)
  full_BxTxO = model(tokens)
  cache = model.init_cache(B, T)
  for t in range(T):
    out_BxO, cache = model.decode(tokens[:, t], cache)
    np.testing.assert_allclose(out_BxO, full_BxTxO[:, t], rtol=1e-5, atol=1e-5)


def test_a_recurrent_state_does_not_grow_and_a_kv_cache_does():
  sizes = {}
  for name in ('lstm', 'transformer'):
    model = build(name, max_len=4096)
    sizes[name] = [sum(x.nbytes for x in jax.tree.leaves(model.init_cache(1, n)['state']))
                   for n in (128, 1024)]
  assert sizes['lstm'][0] == sizes['lstm'][1] == 2 * 2 * 8 * 4   # 2 layers x (h, c) x H f32
  assert sizes['transformer'][1] == 8 * sizes['transformer'][0]   # 2 layers x (k, v) x T x D
  assert sizes['transformer'][0] == 2 * 2 * 128 * 8 * 4


def test_learned_positions_refuse_a_longer_context():
  model = build('transformer', positions='learned')
  with pytest.raises(ValueError, match='longer than the 12 learned positions'):
    model.init_cache(1, T + 1)
  with pytest.raises(ValueError, match='longer than the 12 learned positions'):
    model(jnp.zeros((1, T + 1), jnp.int32))


def test_a_last_readout_model_does_not_decode():
  cfg = models.ModelConfig(name='lstm', hidden=8, vocab_size=VOCAB, num_outputs=3,
                           readout='last')
  with pytest.raises(ValueError, match='per-step model'):
    models.build(cfg, 0).init_cache(1, 4)
