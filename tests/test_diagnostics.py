"""Gradient-flow diagnostics against the linear theory of Pascanu et al. (2013)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab import models
from seqlab.data import tasks
from seqlab.measure import diagnostics
from seqlab.models import cells

H, T, B = 8, 40, 3


def layer_with(cell, rho):
  layer = cells.RecurrentLayer(cell, H, H, rngs=nnx.Rngs(0), spectral_radius=rho)
  layer.w_ih[...] = jnp.eye(H)       # U = I: then ||dL/dx_t|| = ||dL/dh_t||
  return layer


def unit_v(key=1):
  v = jax.random.normal(jax.random.key(key), (B, H))
  return v / jnp.linalg.norm(v, axis=-1, keepdims=True)


@pytest.mark.parametrize('rho', [0.5, 0.9, 1.0, 1.1])
def test_linear_recurrence_gradient_is_rho_to_the_distance(rho):
  layer, v = layer_with('linear', rho), unit_v()
  x = jax.random.normal(jax.random.key(2), (B, T, H))
  norms = diagnostics.grad_norm_by_position(lambda e: jnp.sum(v * layer(e)[0][:, -1]), x)
  d = diagnostics.by_distance(norms)
  np.testing.assert_allclose(d, rho ** np.arange(T), rtol=2e-4)
  assert diagnostics.decay_rate_per_step(d) == pytest.approx(np.log(rho), abs=1e-4)


@pytest.mark.parametrize('rho', [0.9, 1.1])
def test_tanh_rnn_stays_under_the_linear_bound(rho):
  layer, v = layer_with('rnn', rho), unit_v()
  x = jax.random.normal(jax.random.key(2), (B, T, H))
  d = diagnostics.by_distance(
      diagnostics.grad_norm_by_position(lambda e: jnp.sum(v * layer(e)[0][:, -1]), x))
  assert np.all(d <= rho ** np.arange(T) * (1 + 1e-5))
  assert d[-1] < 0.5 * rho ** (T - 1)  # saturation makes it strictly faster


def test_state_jacobian_of_linear_recurrence_is_rho_to_the_distance():
  layer = layer_with('linear', 0.8)
  x = jax.random.normal(jax.random.key(2), (B, T, H))
  j = diagnostics.by_distance(diagnostics.state_jacobian_by_position(layer, x, jax.random.key(3)))
  np.testing.assert_allclose(j, 0.8 ** np.arange(T), rtol=2e-4)


@pytest.mark.parametrize('cell', ['lstm', 'gru'])
def test_state_jacobian_of_gated_cells_is_the_product_of_step_jacobians(cell):
  """||(dh_T/dh_t)^T v|| against the explicit product of the per-step state Jacobians
  (the LSTM's state is (h, c); the probe enters h, the readout is h)."""
  t_len = 12
  layer = cells.RecurrentLayer(cell, H, H, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (B, t_len, H))
  got = diagnostics.state_jacobian_by_position(layer, x, jax.random.key(3))
  v = jax.random.normal(jax.random.key(3), (B, H))
  v = np.asarray(v / jnp.linalg.norm(v, axis=-1, keepdims=True), np.float64)
  p, xw = layer.step_params(), layer.project(x)
  k = 2 if cell == 'lstm' else 1                     # state = k blocks of H
  def step(s_flat, xw_t):
    s = (s_flat[:H], s_flat[H:]) if k == 2 else s_flat
    out = cells.CELLS[cell].step(p, s, xw_t)
    return jnp.concatenate(out) if k == 2 else out
  want = np.zeros(t_len)
  for b in range(B):
    s, jacs = jnp.zeros(k * H), []
    for t in range(t_len):
      jacs.append(np.asarray(jax.jacfwd(step)(s, xw[b, t]), np.float64))
      s = step(s, xw[b, t])
    lam = np.concatenate([v[b], np.zeros((k - 1) * H)])   # d(v . h_T)/d state_T
    for t in range(t_len - 1, -1, -1):
      want[t] += np.linalg.norm(lam[:H]) / B            # the probe at t is added to h_t
      lam = jacs[t].T @ lam
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-7)
  assert want[0] < 0.9 * want[-1]                         # it decays: not just ||v|| = 1


def test_bidirectional_transformer_gradient_reaches_every_position():
  task = tasks.TASKS['recall']
  cfg = models.ModelConfig(name='transformer', hidden=16, vocab_size=task.vocab_size,
                           num_outputs=task.num_outputs, readout='last', max_len=T + 1)
  model = models.build(cfg, 0)
  batch = {k: jnp.asarray(v) for k, v in task.batch(0, 0, B, T).items()}
  g = diagnostics.model_input_grad_norms(model, batch, task)
  assert g.shape == (T,) and np.all(np.asarray(g) > 0)


@pytest.mark.parametrize('init', ['orthogonal', 'lecun_normal'])
def test_recurrent_spectra_report_each_gate_block(init):
  cfg = models.ModelConfig(name='lstm', hidden=H, vocab_size=5, num_outputs=5, layers=2,
                           spectral_radius=0.7, recurrent_init=init)
  m = models.build(cfg, 0)
  s = diagnostics.recurrent_spectra(m)
  assert np.array(s['w_hh_spectral_radius']).shape == (2, 4)
  for i, layer in enumerate(m.backbone.stack.layers):
    w = np.asarray(layer.w_hh[...], np.float64)
    for g in range(4):
      bk = w[:, g * H:(g + 1) * H]
      assert s['w_hh_spectral_radius'][i][g] == pytest.approx(
          max(abs(np.linalg.eigvals(bk))), rel=1e-6)
      assert s['w_hh_max_singular_value'][i][g] == pytest.approx(np.linalg.norm(bk, 2),
                                                                   rel=1e-6)
  if init == 'orthogonal':   # rho Q: every eigenvalue and singular value is rho
    np.testing.assert_allclose(s['w_hh_spectral_radius'], 0.7, rtol=1e-4)
    np.testing.assert_allclose(s['w_hh_max_singular_value'], 0.7, rtol=1e-4)
  else:                      # a non-normal matrix: the largest singular value exceeds rho
    assert (np.array(s['w_hh_max_singular_value']) >
            np.array(s['w_hh_spectral_radius']) * 1.05).all()


def test_decay_rate_ignores_underflow():
  g = np.concatenate([0.5 ** np.arange(50), np.zeros(20)])
  assert diagnostics.decay_rate_per_step(g) == pytest.approx(np.log(0.5), rel=1e-6)
