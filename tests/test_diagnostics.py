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
def test_state_jacobian_runs_for_gated_cells(cell):
  layer = cells.RecurrentLayer(cell, H, H, rngs=nnx.Rngs(0))
  x = jax.random.normal(jax.random.key(2), (B, T, H))
  j = diagnostics.state_jacobian_by_position(layer, x, jax.random.key(3))
  assert j.shape == (T,) and np.all(np.isfinite(j)) and j[-1] == pytest.approx(1.0, rel=1e-5)


def test_bidirectional_transformer_gradient_reaches_every_position():
  task = tasks.TASKS['recall']
  cfg = models.ModelConfig(name='transformer', hidden=16, vocab_size=task.vocab_size,
                           num_outputs=task.num_outputs, readout='last', max_len=T + 1)
  model = models.build(cfg, 0)
  batch = {k: jnp.asarray(v) for k, v in task.batch(0, 0, B, T).items()}
  g = diagnostics.model_input_grad_norms(model, batch, task)
  assert g.shape == (T,) and np.all(np.asarray(g) > 0)


def test_recurrent_spectra_report_each_gate_block():
  cfg = models.ModelConfig(name='lstm', hidden=H, vocab_size=5, num_outputs=5, layers=2,
                           spectral_radius=0.7)
  s = diagnostics.recurrent_spectra(models.build(cfg, 0))
  assert np.array(s['w_hh_spectral_radius']).shape == (2, 4)
  np.testing.assert_allclose(s['w_hh_spectral_radius'], 0.7, rtol=1e-4)
  np.testing.assert_allclose(s['w_hh_max_singular_value'], 0.7, rtol=1e-4)


def test_decay_rate_ignores_underflow():
  g = np.concatenate([0.5 ** np.arange(50), np.zeros(20)])
  assert diagnostics.decay_rate_per_step(g) == pytest.approx(np.log(0.5), rel=1e-6)
