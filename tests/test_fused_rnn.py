"""fused_rnn's custom-vjp scans equal the reference lax.scan of the cell: outputs,
final states and gradients (weights, inputs, non-zero initial states)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab import models
from seqlab.models import cells

B, T, D, H = 3, 11, 5, 6


def _layer_pair(cell, unroll):
  ref = cells.RecurrentLayer(cell, D, H, rngs=nnx.Rngs(0), impl='scan')
  fast = cells.RecurrentLayer(cell, D, H, rngs=nnx.Rngs(0), impl='fused', unroll=unroll)
  return ref, fast


def _state0(cell, key):
  k1, k2 = jax.random.split(key)
  h0 = 0.5 * jax.random.normal(k1, (B, H))
  return (h0, 0.5 * jax.random.normal(k2, (B, H))) if cell == 'lstm' else h0


@pytest.mark.parametrize('cell,unroll', [('lstm', 1), ('gru', 1), ('lstm', 4)])
def test_fused_equals_reference_outputs_and_gradients(cell, unroll):
  ref, fast = _layer_pair(cell, unroll)
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  state0 = _state0(cell, jax.random.key(2))
  w_out = jax.random.normal(jax.random.key(3), (H,))

  def loss(layer, x, state0):
    h_BxTxH, state_T = layer(x, state0)
    final = sum(jnp.sum(s ** 2) for s in jax.tree.leaves(state_T))
    return jnp.sum(jnp.tanh(h_BxTxH) @ w_out) + final   # every output and final state used

  for a, b in [(ref(x, state0), fast(x, state0))]:
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6), a, b)
  grad = nnx.grad(loss, argnums=(0, 1, 2))
  g_ref, g_fast = grad(ref, x, state0), grad(fast, x, state0)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-5),
               jax.tree.leaves(g_ref), jax.tree.leaves(g_fast))
  # the gradient of W_hh and of the initial state are not trivially zero
  assert float(jnp.abs(g_fast[0]['w_hh'][...]).sum()) > 0
  assert float(sum(jnp.abs(s).sum() for s in jax.tree.leaves(g_fast[2]))) > 0


@pytest.mark.parametrize('cell', ['lstm', 'gru'])
def test_model_kernel_fused_matches_scan(cell):
  cfg = models.ModelConfig(name=cell, hidden=8, layers=2, vocab_size=0, input_dim=3,
                           num_outputs=2)
  m_ref = models.build(cfg, 0)
  m_fast = models.build(dataclasses.replace(cfg, kernel='fused'), 0)
  x = jax.random.normal(jax.random.key(0), (2, 9, 3))
  loss = lambda m: jnp.sum(m(x) ** 2)
  np.testing.assert_allclose(m_ref(x), m_fast(x), rtol=1e-5, atol=1e-6)
  g_ref, g_fast = nnx.grad(loss)(m_ref), nnx.grad(loss)(m_fast)
  jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, rtol=1e-4, atol=1e-6),
               jax.tree.leaves(g_ref), jax.tree.leaves(g_fast))


def test_fused_is_ignored_for_cells_without_fast_path():
  layer = cells.RecurrentLayer('rnn', D, H, rngs=nnx.Rngs(0), impl='fused')
  assert layer.impl == 'scan'
