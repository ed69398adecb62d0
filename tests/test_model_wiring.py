"""Every model's wiring against a direct numpy forward of ONE example, written from the
papers' equations with the model's own weights (float64, no jax): embedding, each
layer, residuals, norms, the readout ('per_step', 'last' = h_T / CLS / mean) and head.
Also the recurrent initialisers against what they promise."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab import models
from seqlab.models import cells

V, T, O = 7, 6, 3


def a(x):
  """A parameter (nnx.Variable) or array as float64 numpy."""
  return np.asarray(x[...] if isinstance(x, nnx.Variable) else x, np.float64)


def sigmoid(x):
  return 1 / (1 + np.exp(-x))


def gelu(x):  # jax.nn.gelu's default: the tanh approximation (Hendrycks & Gimpel 2016)
  return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(ln, x):
  mu = x.mean(-1, keepdims=True)
  var = ((x - mu) ** 2).mean(-1, keepdims=True)
  return (x - mu) / np.sqrt(var + ln.epsilon) * a(ln.scale) + a(ln.bias)


def linear(lin, x):
  return x @ a(lin.kernel) + a(lin.bias)


def build(name, readout='per_step', **kw):
  cfg = models.ModelConfig(name=name, hidden=8, vocab_size=V, num_outputs=O, readout=readout,
                           max_len=T + 1, heads=2, mlp_ratio=2, **kw)
  return models.build(cfg, 3)


def tokens(seed=0):
  return np.random.default_rng(seed).integers(0, V, size=T)


# ------------------------------------------------------------------------ recurrent cells
def cell_forward(name, layer, x_TxD):
  """h_1..h_T from h_0 = 0 (and c_0 = 0), one example, a Python loop over time."""
  w_ih, b, w_hh = a(layer.w_ih), a(layer.b), a(layer.w_hh)
  hid = w_hh.shape[0]
  h, c, out = np.zeros(hid), np.zeros(hid), []
  for x in x_TxD:
    if name == 'rnn':                    # Elman (1990)
      h = np.tanh(x @ w_ih + b + h @ w_hh)
    elif name == 'lstm':                 # gates i, f, g, o
      z = x @ w_ih + b + h @ w_hh
      i, f, g, o = (z[k * hid:(k + 1) * hid] for k in range(4))
      c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
      h = sigmoid(o) * np.tanh(c)
    else:                                # GRU (Cho et al. 2014), flax's r * (W_hn h)
      zx, zh = x @ w_ih + b, h @ w_hh
      r = sigmoid(zx[:hid] + zh[:hid])
      u = sigmoid(zx[hid:2 * hid] + zh[hid:2 * hid])
      n = np.tanh(zx[2 * hid:] + r * zh[2 * hid:])
      h = (1 - u) * n + u * h
    out.append(h)
  return np.stack(out)


@pytest.mark.parametrize('name', ['rnn', 'lstm', 'gru'])
@pytest.mark.parametrize('readout', ['per_step', 'last'])
def test_recurrent_model_is_embed_cells_head(name, readout):
  m = build(name, readout, layers=2, spectral_radius=0.9)
  x = tokens()
  h = a(m.embed.embedding)[x]
  for layer in m.backbone.stack.layers:
    h = cell_forward(name, layer, h)
  feat = h if readout == 'per_step' else h[-1]          # 'last': h_T
  want = linear(m.head, feat)
  got = np.asarray(m(jnp.asarray(x[None]))[0], np.float64)
  np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_real_valued_inputs_go_through_a_linear_embedding():
  cfg = models.ModelConfig(name='rnn', hidden=8, vocab_size=0, input_dim=2, num_outputs=1,
                           readout='last')
  m = models.build(cfg, 0)
  x = np.random.default_rng(1).uniform(size=(T, 2))
  want = linear(m.head, cell_forward('rnn', m.backbone.stack.layers[0], linear(m.embed, x))[-1])
  np.testing.assert_allclose(np.asarray(m(jnp.asarray(x[None], jnp.float32))[0]), want,
                             rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------ initialisers
def test_lstm_bias_is_zero_except_the_forget_gate():
  h = 5
  layer = cells.RecurrentLayer('lstm', 3, h, rngs=nnx.Rngs(0),
                               forget_bias=1.5)
  np.testing.assert_array_equal(np.asarray(layer.b[...]),
                                np.concatenate([np.zeros(h), np.full(h, 1.5), np.zeros(2 * h)]))
  for cell in ('rnn', 'gru'):
    layer = cells.RecurrentLayer(cell, 3, h, rngs=nnx.Rngs(0),
                                 forget_bias=1.5)
    assert not np.asarray(layer.b[...]).any()


@pytest.mark.parametrize('gates', [1, 4])
def test_identity_init_is_rho_times_eye_per_gate(gates):
  w = np.asarray(cells.recurrent_init('identity', 0.7, jax.random.key(0), 5, gates))
  np.testing.assert_array_equal(w, np.tile(0.7 * np.eye(5, dtype=np.float32), (1, gates)))


def test_orthogonal_init_is_rho_times_an_orthogonal_block_per_gate():
  w = np.asarray(cells.recurrent_init('orthogonal', 0.8, jax.random.key(0), 6, 3), np.float64)
  blocks = [w[:, k * 6:(k + 1) * 6] for k in range(3)]
  for bk in blocks:
    np.testing.assert_allclose(bk @ bk.T, 0.64 * np.eye(6), atol=1e-5)
  assert not np.allclose(blocks[0], blocks[1])        # independent blocks


def test_lecun_normal_init_has_variance_one_over_fan_in_and_ignores_rho():
  h, gates = 256, 3
  w = np.asarray(cells.recurrent_init('lecun_normal', 0.5, jax.random.key(0), h, gates),
                 np.float64)
  assert w.shape == (h, gates * h)
  # truncated normal with variance 1/fan_in (jax's lecun_normal): std 1/16 here
  assert w.std() == pytest.approx(1 / math.sqrt(h), rel=0.03)
  assert abs(w.mean()) < 0.01 / math.sqrt(h) * 10
  blocks = [w[:, k * h:(k + 1) * h] for k in range(gates)]
  assert not np.allclose(blocks[0], blocks[1])
  # not rescaled to rho: the radius of a 256 x 256 block is about 1 (circular law)
  assert np.abs(np.linalg.eigvals(blocks[0])).max() == pytest.approx(1.0, abs=0.15)


def test_unknown_init_is_refused():
  with pytest.raises(ValueError, match="unknown recurrent_init 'he'; allowed: orthogonal"):
    cells.recurrent_init('he', 1.0, jax.random.key(0), 4, 1)


def test_model_config_reaches_the_layers():
  m = build('rnn', recurrent_init='identity', spectral_radius=0.6)
  np.testing.assert_array_equal(np.asarray(m.backbone.stack.layers[0].w_hh[...]),
                                0.6 * np.eye(8, dtype=np.float32))
  m = build('lstm', forget_bias=2.0)
  assert float(m.backbone.stack.layers[0].b[...][8]) == 2.0


# ------------------------------------------------------------------------ linear RNNs
def lru_forward(layer, x_TxD):
  """Orvieto et al. (2023): u = LN(x), h_t = lambda h_{t-1} + gamma (B u_t),
  y = Re(C h) + D u, out = x + GLU(GELU(y))."""
  u = layer_norm(layer.norm, x_TxD)
  lam = np.exp(-np.exp(a(layer.nu_log)) + 1j * np.exp(a(layer.theta_log)))
  gamma = np.exp(a(layer.gamma_log))
  b_mat = a(layer.b_re) + 1j * a(layer.b_im)           # [D, N]
  c_mat = a(layer.c_re) + 1j * a(layer.c_im)           # [N, D]
  h, out = np.zeros(lam.shape, complex), []
  for u_t, x_t in zip(u, x_TxD):
    h = lam * h + gamma * (u_t @ b_mat)
    y = (h @ c_mat).real + a(layer.d) * u_t
    z = linear(layer.glu, gelu(y))
    d = z.shape[0] // 2
    out.append(x_t + z[:d] * sigmoid(z[d:]))
  return np.stack(out)


def mingru_forward(layer, x_TxD):
  """Feng et al. (2024): z = sigmoid(W_z u), h~ = W_h u, h = (1 - z) h + z h~,
  out = x + W_o h, u = LN(x)."""
  u = layer_norm(layer.norm, x_TxD)
  h, out = 0.0, []
  for u_t, x_t in zip(u, x_TxD):
    z = sigmoid(linear(layer.gate, u_t))
    h = (1 - z) * h + z * linear(layer.candidate, u_t)
    out.append(x_t + linear(layer.out, h))
  return np.stack(out)


@pytest.mark.parametrize('name, forward', [('lru', lru_forward), ('mingru', mingru_forward)])
@pytest.mark.parametrize('kernel', ['parallel', 'sequential'])
@pytest.mark.parametrize('readout', ['per_step', 'last'])
def test_linear_rnn_model_against_numpy(name, forward, kernel, readout):
  m = build(name, readout, layers=2, kernel=kernel)
  x = tokens(1)
  h = a(m.embed.embedding)[x]
  for layer in m.backbone.layers:
    h = forward(layer, h)
  want = linear(m.head, h if readout == 'per_step' else h[-1])
  np.testing.assert_allclose(np.asarray(m(jnp.asarray(x[None]))[0]), want, rtol=1e-4,
                             atol=1e-5)


def test_lru_eigenvalues_lie_on_the_configured_ring():
  m = build('lru', r_min=0.5, r_max=0.6, max_phase=1.0)
  layer = m.backbone.layers[0]
  lam = np.asarray(layer.eigenvalues())
  assert ((np.abs(lam) >= 0.5 - 1e-6) & (np.abs(lam) <= 0.6 + 1e-6)).all()
  assert ((np.angle(lam) >= 0) & (np.angle(lam) <= 1.0 + 1e-6)).all()
  # gamma = sqrt(1 - |lambda|^2) (Orvieto et al. 2023, sec. 3.3)
  np.testing.assert_allclose(np.exp(a(layer.gamma_log)), np.sqrt(1 - np.abs(lam) ** 2),
                             rtol=1e-5)


# ------------------------------------------------------------------------ transformer
def attention_forward(attn, x_TxD, causal):
  w_qkv, w_out = a(attn.w_qkv), a(attn.w_out)        # [D, 3, N, K], [N, K, D]
  q, k, v = (np.einsum('td,dnk->tnk', x_TxD, w_qkv[:, i]) for i in range(3))
  heads = []
  for n in range(q.shape[1]):
    s = q[:, n] @ k[:, n].T / math.sqrt(q.shape[2])
    if causal:
      s = np.where(np.tril(np.ones_like(s)) > 0, s, -np.inf)
    p = np.exp(s - s.max(-1, keepdims=True))
    heads.append((p / p.sum(-1, keepdims=True)) @ v[:, n])
  return np.einsum('nsk,nkd->sd', np.stack(heads), w_out)


def block_forward(block, x, causal):
  """Pre-LN (Xiong et al. 2020): x + MHA(LN(x)), then x + MLP(LN(x))."""
  x = x + attention_forward(block.attn, layer_norm(block.ln1, x), causal)
  return x + linear(block.mlp_out, gelu(linear(block.mlp_in, layer_norm(block.ln2, x))))


def sinusoids(t, d):
  pe = np.zeros((t, d))
  for pos in range(t):
    for i in range(0, d, 2):
      pe[pos, i] = math.sin(pos / 10000 ** (i / d))
      pe[pos, i + 1] = math.cos(pos / 10000 ** (i / d))
  return pe


@pytest.mark.parametrize('readout, pool', [('per_step', 'cls'), ('last', 'cls'),
                                           ('last', 'mean')])
@pytest.mark.parametrize('positions', ['sinusoidal', 'learned'])
def test_transformer_against_numpy(readout, pool, positions):
  m = build('transformer', readout, layers=2, pool=pool, positions=positions)
  net = m.backbone.net
  x = tokens(2)
  e = a(m.embed.embedding)[x]
  if m.uses_cls:
    e = np.concatenate([a(m.cls)[None], e])
  e = e + (a(net.pos_emb)[:len(e)] if positions == 'learned' else sinusoids(len(e), 8))
  for block in net.blocks:
    e = block_forward(block, e, causal=readout == 'per_step')
  h = layer_norm(net.ln_f, e)
  feat = h if readout == 'per_step' else (h[0] if pool == 'cls' else h.mean(0))
  np.testing.assert_allclose(np.asarray(m(jnp.asarray(x[None]))[0]), linear(m.head, feat),
                             rtol=1e-4, atol=1e-5)
  assert m.uses_cls == (readout == 'last' and pool == 'cls')


@pytest.mark.parametrize('kernel', ['blocked', 'jax'])
def test_every_attention_kernel_computes_the_same_block(kernel):
  m = build('transformer', kernel=kernel)
  block = m.backbone.net.blocks[0]
  x = np.random.default_rng(3).normal(size=(T, 8))
  got = block(jnp.asarray(x[None], jnp.float32), causal=True)[0]
  np.testing.assert_allclose(np.asarray(got), block_forward(block, x, True), rtol=1e-4,
                             atol=1e-5)
