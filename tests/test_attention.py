"""Attention equals jax.nn.dot_product_attention; causal models leak no future."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqlab import models
from seqlab.models import attention


@pytest.mark.parametrize('causal', [True, False])
def test_einsum_attention_equals_jax(causal):
  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, 9, 4, 8))
  ours = attention.ATTENTION_IMPLS['einsum'](q, k, v, causal)
  ref = jax.nn.dot_product_attention(q, k, v, is_causal=causal)
  np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('name', ['transformer', 'rnn', 'lstm', 'gru'])
def test_per_step_output_is_causal(name):
  """d output_t / d input_s is exactly zero for every s > t."""
  cfg = models.ModelConfig(name=name, hidden=16, vocab_size=0, input_dim=3, num_outputs=2,
                           readout='per_step', max_len=12)
  model = models.build(cfg, 0)
  x = jax.random.normal(jax.random.key(1), (1, 10, 3))
  t = 4
  # jitted, as in training (op by op, the transformer's gradient took 4x longer)
  g = jax.jit(jax.grad(lambda x: model(x)[0, t].sum()))(x)
  assert np.all(np.asarray(g[0, t + 1:]) == 0.0)
  assert np.all(np.abs(np.asarray(g[0, :t + 1])).sum(-1) > 0)


@pytest.mark.parametrize('pool', ['cls', 'mean'])
def test_classifier_transformer_sees_every_position(pool):
  cfg = models.ModelConfig(name='transformer', hidden=16, vocab_size=0, input_dim=3,
                           num_outputs=2, readout='last', pool=pool, max_len=12)
  model = models.build(cfg, 0)
  x = jax.random.normal(jax.random.key(1), (2, 10, 3))
  assert model(x).shape == (2, 2)
  g = jax.grad(lambda x: model(x)[0].sum())(x)
  assert np.all(np.abs(np.asarray(g[0])).sum(-1) > 0)


def test_learned_positions_change_output():
  cfg = models.ModelConfig(name='transformer', hidden=16, vocab_size=5, num_outputs=5,
                           readout='per_step', positions='learned', max_len=8)
  model = models.build(cfg, 0)
  x = jnp.zeros((1, 8), jnp.int32)
  y = model(x)
  assert y.shape == (1, 8, 5)
  assert not np.allclose(y[0, 0], y[0, 7])  # same token, different positions
