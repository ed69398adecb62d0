"""Every cell against a plain Python-loop reference, and LSTM/GRU against flax."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.models import cells

jax.config.update('jax_enable_x64', False)
B, T, D, H = 3, 7, 5, 4


def sigmoid(x):
  return 1 / (1 + jnp.exp(-x))


def reference(cell, w_ih, b, w_hh, x, state0):
  """Python loop over time, batched matrices, written from the textbook equations."""
  outs, state = [], state0
  for t in range(x.shape[1]):
    xt = x[:, t] @ w_ih + b
    if cell == 'rnn':
      state = jnp.tanh(xt + state @ w_hh)
      h = state
    elif cell == 'gru':
      xr, xz, xn = jnp.split(xt, 3, -1)
      hr, hz, hn = jnp.split(state @ w_hh, 3, -1)
      r, z = sigmoid(xr + hr), sigmoid(xz + hz)
      n = jnp.tanh(xn + r * hn)
      state = (1 - z) * n + z * state
      h = state
    else:
      h, c = state
      i, f, g, o = jnp.split(xt + h @ w_hh, 4, -1)
      c = sigmoid(f) * c + sigmoid(i) * jnp.tanh(g)
      h = sigmoid(o) * jnp.tanh(c)
      state = (h, c)
    outs.append(h)
  return jnp.stack(outs, 1)


@pytest.mark.parametrize('cell', ['rnn', 'lstm', 'gru'])
def test_scan_matches_loop_reference_outputs_and_grads(cell):
  layer = cells.RecurrentLayer(cell, D, H, rngs=nnx.Rngs(0), spectral_radius=0.9)
  k1, k2, k3 = jax.random.split(jax.random.key(1), 3)
  x = jax.random.normal(k1, (B, T, D))
  if cell == 'lstm':
    state0 = (jax.random.normal(k2, (B, H)), jax.random.normal(k3, (B, H)))
  else:
    state0 = jax.random.normal(k2, (B, H))
  probe = jax.random.normal(jax.random.key(2), (B, T, H))
  graphdef, params = nnx.split(layer, nnx.Param)
  w = (layer.w_ih[...], layer.b[...], layer.w_hh[...])

  def fast(w, x, s0):
    p = jax.tree.map(lambda a: a, params)
    p['w_ih'][...], p['b'][...], p['w_hh'][...] = w
    return jnp.sum(nnx.merge(graphdef, p)(x, s0)[0] * probe)

  def ref(w, x, s0):
    return jnp.sum(reference(cell, *w, x, s0) * probe)

  np.testing.assert_allclose(layer(x, state0)[0], reference(cell, *w, x, state0),
                             rtol=1e-5, atol=1e-5)
  g_fast = jax.grad(fast, argnums=(0, 1, 2))(w, x, state0)
  g_ref = jax.grad(ref, argnums=(0, 1, 2))(w, x, state0)
  for a, b in zip(jax.tree.leaves(g_fast), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_lstm_equals_flax_cell():
  layer = cells.RecurrentLayer('lstm', D, H, rngs=nnx.Rngs(0), forget_bias=0.5)
  ref = nnx.LSTMCell(D, H, rngs=nnx.Rngs(3))
  w_ih, b, w_hh = layer.w_ih[...], layer.b[...], layer.w_hh[...]
  for j, (ni, nh) in enumerate([('ii', 'hi'), ('if_', 'hf'), ('ig', 'hg'), ('io', 'ho')]):
    sl = slice(j * H, (j + 1) * H)
    getattr(ref, ni).kernel[...] = w_ih[:, sl]
    getattr(ref, nh).kernel[...] = w_hh[:, sl]
    getattr(ref, nh).bias[...] = b[sl]
  x = jax.random.normal(jax.random.key(4), (B, T, D))
  h0, c0 = jax.random.normal(jax.random.key(5), (2, B, H))
  ours = layer(x, (h0, c0))[0]
  carry, outs = (c0, h0), []
  for t in range(T):
    carry, y = ref(carry, x[:, t])
    outs.append(y)
  np.testing.assert_allclose(ours, jnp.stack(outs, 1), rtol=1e-5, atol=1e-6)


def test_gru_equals_flax_cell():
  layer = cells.RecurrentLayer('gru', D, H, rngs=nnx.Rngs(0))
  layer.b[...] = jax.random.normal(jax.random.key(9), layer.b.shape)
  ref = nnx.GRUCell(D, H, rngs=nnx.Rngs(3))
  ref.dense_i.kernel[...] = layer.w_ih[...]
  ref.dense_i.bias[...] = layer.b[...]
  ref.dense_h.kernel[...] = layer.w_hh[...]
  x = jax.random.normal(jax.random.key(4), (B, T, D))
  h0 = jax.random.normal(jax.random.key(5), (B, H))
  ours = layer(x, h0)[0]
  h, outs = h0, []
  for t in range(T):
    h, y = ref(h, x[:, t])
    outs.append(y)
  np.testing.assert_allclose(ours, jnp.stack(outs, 1), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('rho', [0.5, 1.0, 1.1])
def test_orthogonal_init_has_requested_spectral_radius(rho):
  w = cells.recurrent_init('orthogonal', rho, jax.random.key(0), 16, 1)
  np.testing.assert_allclose(np.abs(np.linalg.eigvals(np.asarray(w))), rho, rtol=1e-4)
  np.testing.assert_allclose(np.linalg.svd(np.asarray(w), compute_uv=False), rho, rtol=1e-4)


def test_lstm_forget_bias_set():
  layer = cells.RecurrentLayer('lstm', D, H, rngs=nnx.Rngs(0), forget_bias=2.0)
  # gates i, f, g, o: only f carries the bias (a bias on g or o changes the cell)
  np.testing.assert_array_equal(layer.b[...], np.concatenate(
      [np.zeros(H), np.full(H, 2.0), np.zeros(2 * H)]))


def test_stack_layers_feed_each_other():
  stack = cells.RecurrentStack('gru', D, H, 3, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(4), (B, T, D))
  h = x
  for layer in stack.layers:
    h, _ = layer(h)
  np.testing.assert_allclose(stack(x), h, rtol=1e-6)
  assert stack(x).shape == (B, T, H)
