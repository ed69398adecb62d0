"""Blocked (online-softmax) attention equals the einsum reference: outputs and
gradients, causal and not, T not a multiple of the block, T != S."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqlab import models
from seqlab.models import attention, blocked_attention


@pytest.mark.parametrize('causal,t,block', [(True, 37, 8), (False, 37, 8), (True, 16, 8),
                                            (False, 5, 16)])
def test_blocked_equals_einsum_outputs_and_gradients(causal, t, block):
  q, k, v = jax.random.normal(jax.random.key(0), (3, 2, t, 3, 8))
  w = jax.random.normal(jax.random.key(1), (2, t, 3, 8))
  ref_fn = attention.ATTENTION_IMPLS['einsum']
  fast_fn = lambda q, k, v, c: blocked_attention.blocked_attention(q, k, v, c, block=block)
  # jitted, as in training (op by op, each small op was compiled on its own: 4x slower)
  fwd = lambda fn: jax.jit(lambda q, k, v: fn(q, k, v, causal))
  np.testing.assert_allclose(fwd(fast_fn)(q, k, v), fwd(ref_fn)(q, k, v),
                             rtol=1e-5, atol=1e-5)
  loss = lambda fn: lambda q, k, v: jnp.sum(fn(q, k, v, causal) * w)
  g_ref = jax.jit(jax.grad(loss(ref_fn), argnums=(0, 1, 2)))(q, k, v)
  g_fast = jax.jit(jax.grad(loss(fast_fn), argnums=(0, 1, 2)))(q, k, v)
  for a, b in zip(g_ref, g_fast):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_blocked_cross_attention_t_ne_s():
  q = jax.random.normal(jax.random.key(0), (2, 13, 2, 4))
  k, v = jax.random.normal(jax.random.key(1), (2, 2, 21, 2, 4))
  np.testing.assert_allclose(blocked_attention.blocked_attention(q, k, v, False, block=8),
                             attention.ATTENTION_IMPLS['einsum'](q, k, v, False),
                             rtol=1e-5, atol=1e-5)


def test_registered_and_causal_in_a_model():
  assert 'blocked' in attention.ATTENTION_IMPLS
  cfg = models.ModelConfig(name='transformer', hidden=16, vocab_size=0, input_dim=3,
                           num_outputs=2, max_len=300, kernel='blocked')
  model = models.build(cfg, 0)
  x = jax.random.normal(jax.random.key(1), (1, 200, 3))   # 2 blocks of 128, padded
  t = 130
  g = jax.grad(lambda x: model(x)[0, t].sum())(x)
  assert np.all(np.asarray(g[0, t + 1:]) == 0.0)
  assert np.all(np.abs(np.asarray(g[0, :t + 1])).sum(-1) > 0)


def _grad_temp_bytes(impl, t):
  q = jax.ShapeDtypeStruct((1, t, 2, 8), jnp.float32)
  fn = attention.ATTENTION_IMPLS[impl]
  grad = jax.grad(lambda q, k, v: jnp.sum(fn(q, k, v, True) ** 2), argnums=(0, 1, 2))
  return jax.jit(grad).lower(q, q, q).compile().memory_analysis().temp_size_in_bytes


def test_blocked_gradient_memory_grows_linearly_einsum_quadratically():
  """Compiled temporary memory of the gradient from T=1024 to T=4096 (4x longer):
  the blocked kernel keeps O(T) (about 4x), the einsum reference holds [T, T] (~16x)."""
  blocked = _grad_temp_bytes('blocked', 4096) / _grad_temp_bytes('blocked', 1024)
  einsum = _grad_temp_bytes('einsum', 4096) / _grad_temp_bytes('einsum', 1024)
  assert blocked < 6, blocked
  assert einsum > 12, einsum
