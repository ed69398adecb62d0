"""The accelerator kernels JAX ships, as far as a CPU can run them: cuDNN's LSTM weight
packing against jax.experimental.rnn's own unpacking, its reference (lstm_ref) against
seqlab's scan on outputs and gradients, and Pallas' TPU flash attention in interpret
mode against the einsum reference; the fallbacks say so once."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import rnn

from seqlab import models
from seqlab.models import attention, cells, vendor_kernels

D, H, B, T = 3, 5, 2, 7


def test_lstm_packing_is_jax_rnn_layout():
  layer = cells.RecurrentLayer('lstm', D, H, rngs=nnx.Rngs(0))
  w_ih, w_hh, b = layer.w_ih[...], layer.w_hh[...], layer.b[...] + 0.1
  flat = vendor_kernels.pack_lstm(w_ih, w_hh, b)
  assert flat.size == rnn.get_num_params_in_lstm(D, H, 1, False)
  W_ih, W_hh, b_ih, b_hh = rnn.unpack_lstm_weights(flat, D, H, 1, False)
  np.testing.assert_array_equal(W_ih[0], w_ih.T)   # torch.nn.LSTM: [4H, D], gates i, f, g, o
  np.testing.assert_array_equal(W_hh[0], w_hh.T)
  np.testing.assert_array_equal(b_ih[0], b)
  np.testing.assert_array_equal(b_hh[0], 0 * b)


def test_cudnn_lstm_equals_the_scan_outputs_and_gradients(capsys):
  """cuDNN's layout and maths (jax's lstm_ref, fed as the cuDNN path is) equal seqlab's
  scan (gates i, f, g, o; forget bias in place), with non-zero initial states; on a CPU
  the model's 'cudnn' kernel falls back to the scan with one note."""
  cfg = models.ModelConfig(name='lstm', hidden=H, layers=2, input_dim=D, readout='per_step',
                           num_outputs=4)
  m_scan = models.build(cfg, 0)
  m_cudnn = models.build(dataclasses.replace(cfg, kernel='cudnn'), 0)
  x = jax.random.normal(jax.random.key(1), (B, T, D))
  np.testing.assert_allclose(m_cudnn(x), m_scan(x), rtol=1e-5, atol=1e-6)
  layer = m_scan.backbone.stack.layers[0]
  s0 = (jax.random.normal(jax.random.key(2), (B, H)), jax.random.normal(jax.random.key(3), (B, H)))
  e = jax.random.normal(jax.random.key(4), (B, T, H))   # layer 0 reads the embedded inputs

  def loss(w_ih, b, w_hh, e, s0, impl):
    if impl == 'scan':
      xw = e @ w_ih + b
      step = jax.vmap(cells.lstm_step, in_axes=(None, 0, 0))
      def body(s, xw_t):
        s = step({'w_hh': w_hh}, s, xw_t)
        return s, s[0]
      sT, h = jax.lax.scan(body, s0, jnp.swapaxes(xw, 0, 1))
      h = jnp.swapaxes(h, 0, 1)
    else:
      h, sT = vendor_kernels.cudnn_lstm(w_ih, b, w_hh, e, s0, reference=True)
    return jnp.sum(h * jnp.arange(H)) + jnp.sum(sT[1] ** 2)

  args = (layer.w_ih[...], layer.b[...], layer.w_hh[...], e, s0)
  g_ref = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(*args, 'scan')
  g_cudnn = jax.grad(loss, argnums=(0, 1, 2, 3, 4))(*args, 'cudnn')
  for a, b_ in zip(jax.tree.leaves(g_cudnn), jax.tree.leaves(g_ref)):
    np.testing.assert_allclose(a, b_, rtol=1e-4, atol=1e-5)
  assert capsys.readouterr().out.count('note: model.kernel=cudnn for the LSTM needs a GPU') <= 1


@pytest.mark.parametrize('causal', [True, False])
def test_pallas_flash_attention_in_interpret_mode_equals_the_einsum(causal):
  from jax.experimental.pallas import tpu as pltpu
  b, t, n, k = 1, 128, 2, 32    # its blocks need T a multiple of 128
  q, k_, v = (jax.random.normal(jax.random.key(i), (b, t, n, k)) for i in range(3))
  ref = lambda q: attention.ATTENTION_IMPLS['einsum'](q, k_, v, causal)
  with pltpu.force_tpu_interpret_mode():
    got = vendor_kernels.pallas_flash_attention(q, k_, v, causal)
    g_got = jax.grad(lambda q: jnp.sum(jnp.sin(vendor_kernels.pallas_flash_attention(q, k_, v, causal))))(q)
  g_ref = jax.grad(lambda q: jnp.sum(jnp.sin(ref(q))))(q)
  np.testing.assert_allclose(got, ref(q), rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(g_got, g_ref, rtol=1e-4, atol=1e-5)


def test_cudnn_attention_serves_only_a_gpu_in_half_precision():
  assert vendor_kernels.cudnn_attention_serves(jnp.bfloat16, on='gpu')
  assert vendor_kernels.cudnn_attention_serves(jnp.float16, on='gpu')
  assert not vendor_kernels.cudnn_attention_serves(jnp.float32, on='gpu')
  assert not vendor_kernels.cudnn_attention_serves(jnp.bfloat16, on='cpu')


@pytest.mark.parametrize('kernel', ['cudnn', 'pallas'])
def test_attention_fallback_equals_the_reference_with_one_note(kernel, capsys):
  cfg = models.ModelConfig(name='transformer', hidden=8, heads=2, vocab_size=5, num_outputs=5,
                           readout='per_step')
  x = jax.random.randint(jax.random.key(0), (2, 9), 0, 5)
  ref = models.build(cfg, 0)(x)
  got = models.build(dataclasses.replace(cfg, kernel=kernel), 0)(x)
  np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
  models.build(dataclasses.replace(cfg, kernel=kernel), 0)(x)
  assert capsys.readouterr().out.count(f'note: model.kernel={kernel}') <= 1
