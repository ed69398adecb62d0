"""LRU and minGRU: sequential == parallel scan (outputs, gradients, initial states,
T=4096 in float32), the LRU ring initialisation, and one training step each."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab import models, train
from seqlab.models import linear_rnn
from tests.test_train import tiny_config


def _ab(key, b, t, n, complex_=False):
  k1, k2, k3, k4 = jax.random.split(key, 4)
  a = jax.random.uniform(k1, (b, t, n), minval=0.5, maxval=0.999)
  x = jax.random.normal(k2, (b, t, n))
  if complex_:
    a = a * jnp.exp(1j * jax.random.uniform(k3, (b, t, n), maxval=6.28))
    x = x + 1j * jax.random.normal(k4, (b, t, n))
  return a, x


@pytest.mark.parametrize('complex_', [False, True])
@pytest.mark.parametrize('chunk', [4, 64])   # 10 chunks, the last one padded; one chunk
def test_parallel_scan_equals_sequential_with_initial_state(complex_, chunk):
  a, x = _ab(jax.random.PRNGKey(0), 2, 37, 5, complex_)
  h0 = jax.random.normal(jax.random.PRNGKey(1), (2, 5)).astype(x.dtype)
  seq = linear_rnn.linear_scan(a, x, h0, 'sequential')
  par = linear_rnn.linear_scan(a, x, h0, 'parallel', chunk)
  # Plain loop as the definition.
  h, ref = h0, []
  for t in range(37):
    h = a[:, t] * h + x[:, t]
    ref.append(h)
  np.testing.assert_allclose(seq, np.stack(ref, 1), rtol=1e-5, atol=1e-5)
  np.testing.assert_allclose(par, seq, rtol=1e-5, atol=1e-5)
  # Gradients with respect to a, b and h0 (real loss of possibly complex states).
  def loss(impl, a, x, h0):
    return jnp.sum(jnp.abs(linear_rnn.linear_scan(a, x, h0, impl, chunk)) ** 2)
  gs = jax.grad(loss, argnums=(1, 2, 3))('sequential', a, x, h0)
  gp = jax.grad(loss, argnums=(1, 2, 3))('parallel', a, x, h0)
  for s, p in zip(gs, gp):
    np.testing.assert_allclose(p, s, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize('name', ['lru', 'mingru'])
def test_model_sequential_equals_parallel_at_T4096(name):
  """float32, T=4096, non-zero initial states. Measured on this repo's 2-core x86 CPU
  (jax 0.10.2, chunked parallel scan): outputs differ by 2.4e-6 (lru) / 9.5e-7 (mingru)
  max abs, gradients by 4.0e-7 / 7.9e-8 of the largest gradient (jitted: 2.4e-6 / 1.2e-6
  and 3.1e-7 / 7.9e-8). Asserted: 1e-4 abs and 1e-3 relative."""
  cfg = models.ModelConfig(name=name, hidden=8, layers=2, input_dim=3, kernel='sequential')
  m_seq = models.build(cfg, 0)
  m_par = models.build(dataclasses.replace(cfg, kernel='parallel'), 0)
  e = jax.random.normal(jax.random.PRNGKey(2), (2, 4096, 8))
  dtype = jnp.complex64 if name == 'lru' else jnp.float32
  h0 = [(jax.random.normal(jax.random.PRNGKey(3 + i), (2, 8)) * (1 + 1j if name == 'lru' else 1)
         ).astype(dtype) for i in range(2)]

  def loss(model, e):
    return jnp.mean(model.backbone(e, states0=h0) ** 2)
  # jitted, as in training (op by op took 1.4x longer)
  forward = nnx.jit(lambda model, e: model.backbone(e, states0=h0))
  ys = forward(m_seq, e)
  yp = forward(m_par, e)
  assert np.max(np.abs(ys - yp)) < 1e-4
  grad = nnx.jit(nnx.grad(loss, argnums=(0, 1)))
  gs = grad(m_seq, e)
  gp = grad(m_par, e)
  # Relative to the largest gradient of all: leaves whose gradients are ~1e-8 carry
  # float32 rounding of the order of the big ones' ulp.
  scale = max(float(np.max(np.abs(s))) for s in jax.tree.leaves(gs))
  err = max(float(np.max(np.abs(s - p))) for s, p in zip(jax.tree.leaves(gs), jax.tree.leaves(gp)))
  print(f'{name} T=4096: max|y_seq - y_par| = {np.max(np.abs(ys - yp)):.2e}, '
        f'max grad error / max grad = {err / scale:.2e}')
  assert err / scale < 1e-3
  # The initial state matters: without it the outputs change.
  assert np.max(np.abs(m_par.backbone(e) - yp)) > 1e-3


def test_lru_eigenvalues_start_in_the_ring_and_gamma_normalises():
  layer = linear_rnn.LRULayer(4, 512, rngs=nnx.Rngs(0), r_min=0.5, r_max=0.9)
  r = np.abs(layer.eigenvalues())
  assert r.min() >= 0.5 - 1e-6 and r.max() <= 0.9 + 1e-6
  np.testing.assert_allclose(np.exp(layer.gamma_log[...]), np.sqrt(1 - r ** 2), rtol=1e-5)


@pytest.mark.parametrize('name,scan_impl', [('lru', 'parallel'), ('mingru', 'sequential')])
def test_one_training_step(name, scan_impl, tmp_path):
  """Each model and each scan once through the one training loop."""
  c = tiny_config(name, 'adding', seq_len=20, steps=1)
  with c.unlocked():
    c.model.kernel = scan_impl
  r = train.train(c, str(tmp_path), verbose=False)
  assert r['steps'] == 1 and np.isfinite(r['final_loss'])


def test_bad_kernel_names_the_allowed_values():
  with pytest.raises(ValueError, match="'fast'.*allowed: auto, parallel, sequential"):
    models.build(models.ModelConfig(name='lru', hidden=4, kernel='fast'), 0)


@pytest.mark.parametrize('name', ['lru', 'mingru'])
def test_shapes_and_param_budget(name):
  for readout, shape in [('per_step', (2, 11, 3)), ('last', (2, 3))]:
    cfg = models.ModelConfig(name=name, hidden=8, vocab_size=6, num_outputs=3, readout=readout)
    assert models.build(cfg, 0)(jnp.zeros((2, 11), jnp.int32)).shape == shape
  base = models.ModelConfig(name=name, vocab_size=10, num_outputs=10, layers=2)
  sized = models.size_to_budget(base, 40_000)
  assert abs(models.num_params(sized) - 40_000) / 40_000 < 0.10
