"""Fast LSTM and GRU scans with a hand-written backward pass.

Shape letters as in cells.py: B batch, T time, H hidden, G gate width (3H gru, 4H lstm).

The reference is `cells.RecurrentLayer.scan` (a `lax.scan` of the one-step cell,
differentiated by JAX). Here the forward scan keeps the gate activations, and a
`jax.custom_vjp` backward runs ONE reverse scan that carries only the state
gradients (dh, dc) and emits the gate gradients dA_t [B, G]; the weight gradient is
then formed after the scan as one large matrix product over all steps,
dW_hh = sum_t h_{t-1}^T dA_t = H_prev[TB, H]^T @ dA[TB, G] (the cuDNN recipe,
Appleyard et al. 2016), instead of T small [H, B] x [B, G] products inside the loop.
The input projection x W_ih is hoisted out of the loop: for the LSTM it is inside the
custom VJP, so dW_ih is also one product over all steps and dx one more (which XLA
drops when x is data); for the GRU it is done by JAX before the scan.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

Array = jax.Array

FAST_CELLS = ('lstm', 'gru')


# ------------------------------------------------------------------------------- LSTM
def _lstm_gate_affine(hdim: int, dtype):
  """(scale, shift) with act = tanh(a * scale) * scale + shift per gate column: sigmoid
  for i, f, o (sigmoid(z) = tanh(z / 2) / 2 + 1 / 2) and tanh for g. One transcendental
  over the whole [B, G] row instead of four split ones: XLA:CPU vectorises the former
  but emitted scalar code for the split sigmoid/tanh mix in a scan body (3x slower)."""
  half, one, zero = (jnp.full((hdim,), v, dtype) for v in (0.5, 1.0, 0.0))
  return (jnp.concatenate([half, half, one, half]), jnp.concatenate([half, half, zero, half]))


def _lstm_inputs(x_BxTxD):
  """x twice, time-major (N = T B): as [N, D] and as [D, N]. The input projection
  contracts the first axis of x_DxN and W_ih, which XLA:CPU (jax 0.10) runs as an Eigen
  product; it sends the usual [N, D] x [D, G] form to YNNPACK, which was slower at this
  tall shape on a 2-core CPU ([32768, 256] x [256, 1024]: 97 ms against 72 ms; the whole
  LSTM train step 2-3% faster). The barrier keeps XLA from folding the transpose back
  into the product. dW_ih = x_NxD^T dA contracts the first axes as well (Eigen)."""
  b, t, d = x_BxTxD.shape
  x_NxD = jnp.swapaxes(x_BxTxD, 0, 1).reshape(t * b, d)
  x_DxN = jax.lax.optimization_barrier(jnp.transpose(x_BxTxD, (2, 1, 0)).reshape(d, t * b))
  return x_NxD, x_DxN


def _contract_first(a_KxN, b_KxG):
  """a^T b without materialising a^T: [K, N], [K, G] -> [N, G]."""
  return jax.lax.dot_general(a_KxN, b_KxG, (((0,), (0,)), ((), ())))


def _lstm_forward(x_DxN, w_ih_DxG, b_G, w_hh_HxG, h0_BxH, c0_BxH, unroll):
  scale_G, shift_G = _lstm_gate_affine(w_hh_HxG.shape[0], x_DxN.dtype)
  b = h0_BxH.shape[0]
  # the hoisted input projection; the bias is added in the step
  xw_TxBxG = _contract_first(x_DxN, w_ih_DxG).reshape(-1, b, w_ih_DxG.shape[1])

  def body(hc, xw_BxG):
    h_BxH, c_BxH = hc
    a_BxG = xw_BxG + h_BxH @ w_hh_HxG + b_G
    act_BxG = jnp.tanh(a_BxG * scale_G) * scale_G + shift_G   # gates i, f, g, o (flax order)
    i, f, g, o = jnp.split(act_BxG, 4, axis=-1)
    c_BxH = f * c_BxH + i * g
    h_BxH = o * jnp.tanh(c_BxH)
    # gates stacked as four [T, B, H] arrays, not one [T, B, G]: the backward step then
    # reads whole arrays, and XLA:CPU vectorises it (slices of a dynamic slice it did not)
    return (h_BxH, c_BxH), (h_BxH, c_BxH, (i, f, g, o))
  (h_T, c_T), (h_TxBxH, c_TxBxH, gates) = jax.lax.scan(
      body, (h0_BxH, c0_BxH), xw_TxBxG, unroll=unroll)
  return h_TxBxH, c_TxBxH, gates, h_T, c_T


@functools.partial(jax.custom_vjp, nondiff_argnums=(6,))
def lstm_layer(w_ih_DxG, b_G, w_hh_HxG, x_BxTxD, h0_BxH, c0_BxH, unroll=1):
  """LSTM layer (input projection included) on batch-major x: returns the time-major
  (h_TxBxH, h_T, c_T); equal to cells.RecurrentLayer('lstm') with impl='scan'."""
  _, x_DxN = _lstm_inputs(x_BxTxD)
  h_TxBxH, _, _, h_T, c_T = _lstm_forward(x_DxN, w_ih_DxG, b_G, w_hh_HxG, h0_BxH, c0_BxH,
                                          unroll)
  return h_TxBxH, h_T, c_T


def _lstm_fwd(w_ih_DxG, b_G, w_hh_HxG, x_BxTxD, h0_BxH, c0_BxH, unroll):
  x_NxD, x_DxN = _lstm_inputs(x_BxTxD)
  h_TxBxH, c_TxBxH, gates, h_T, c_T = _lstm_forward(
      x_DxN, w_ih_DxG, b_G, w_hh_HxG, h0_BxH, c0_BxH, unroll)
  res = (w_ih_DxG, w_hh_HxG, x_NxD, h0_BxH, c0_BxH, h_TxBxH, c_TxBxH, gates)
  return (h_TxBxH, h_T, c_T), res


def _lstm_bwd(unroll, res, cts):
  w_ih_DxG, w_hh_HxG, x_NxD, h0_BxH, c0_BxH, h_TxBxH, c_TxBxH, gates = res
  dh_TxBxH, dh_T, dc_T = cts
  c_prev_TxBxH = jnp.concatenate([c0_BxH[None], c_TxBxH[:-1]], axis=0)
  w_hh_GxH = w_hh_HxG.T

  def body(carry, xs):
    dh_BxH, dc_BxH = carry
    dh_out_BxH, c_BxH, c_prev_BxH, i, f, g, o = xs
    dh_BxH = dh_BxH + dh_out_BxH
    tc = jnp.tanh(c_BxH)
    dc_BxH = dc_BxH + dh_BxH * o * (1.0 - tc * tc)
    da_BxG = jnp.concatenate([dc_BxH * g * i * (1.0 - i),            # d pre-activation i
                              dc_BxH * c_prev_BxH * f * (1.0 - f),   # f
                              dc_BxH * i * (1.0 - g * g),            # g
                              dh_BxH * tc * o * (1.0 - o)], axis=-1)  # o
    return (da_BxG @ w_hh_GxH, dc_BxH * f), da_BxG

  (dh0_BxH, dc0_BxH), da_TxBxG = jax.lax.scan(
      body, (dh_T, dc_T), (dh_TxBxH, c_TxBxH, c_prev_TxBxH, *gates),
      reverse=True, unroll=unroll)
  t, b, hdim = h_TxBxH.shape
  d, gdim = w_ih_DxG.shape
  da_NxG = da_TxBxG.reshape(-1, gdim)                  # N = T B
  h_prev_NxH = jnp.concatenate([h0_BxH[None], h_TxBxH[:-1]], axis=0).reshape(-1, hdim)
  # Weight gradients of every step at once: [H, N] x [N, G] and [D, N] x [N, G].
  dw_hh_HxG = h_prev_NxH.T @ da_NxG
  dw_ih_DxG = x_NxD.T @ da_NxG
  dx_BxTxD = jnp.swapaxes((da_NxG @ w_ih_DxG.T).reshape(t, b, d), 0, 1)  # dropped when x is data
  return dw_ih_DxG, da_NxG.sum(0), dw_hh_HxG, dx_BxTxD, dh0_BxH, dc0_BxH


lstm_layer.defvjp(_lstm_fwd, _lstm_bwd)


# -------------------------------------------------------------------------------- GRU
def _gru_forward(w_hh_HxG, xw_TxBxG, h0_BxH, unroll):
  def body(h_BxH, xw_BxG):
    x_r, x_z, x_n = jnp.split(xw_BxG, 3, axis=-1)
    h_r, h_z, h_n = jnp.split(h_BxH @ w_hh_HxG, 3, axis=-1)
    r = jax.nn.sigmoid(x_r + h_r)
    z = jax.nn.sigmoid(x_z + h_z)
    n = jnp.tanh(x_n + r * h_n)
    h_new = (1.0 - z) * n + z * h_BxH
    return h_new, (h_new, jnp.concatenate([r, z, n, h_n], axis=-1))
  h_T, (h_TxBxH, act_TxBx4H) = jax.lax.scan(body, h0_BxH, xw_TxBxG, unroll=unroll)
  return h_TxBxH, act_TxBx4H, h_T


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def gru_scan(w_hh_HxG, xw_TxBxG, h0_BxH, unroll=1):
  """Time-major GRU scan: returns (h_TxBxH, h_T); equal to cells.gru_step scanned."""
  h_TxBxH, _, h_T = _gru_forward(w_hh_HxG, xw_TxBxG, h0_BxH, unroll)
  return h_TxBxH, h_T


def _gru_fwd(w_hh_HxG, xw_TxBxG, h0_BxH, unroll):
  h_TxBxH, act, h_T = _gru_forward(w_hh_HxG, xw_TxBxG, h0_BxH, unroll)
  return (h_TxBxH, h_T), (w_hh_HxG, h0_BxH, h_TxBxH, act)


def _gru_bwd(unroll, res, cts):
  w_hh_HxG, h0_BxH, h_TxBxH, act_TxBx4H = res
  dh_TxBxH, dh_T = cts
  h_prev_TxBxH = jnp.concatenate([h0_BxH[None], h_TxBxH[:-1]], axis=0)
  w_hh_GxH = w_hh_HxG.T

  def body(dh_BxH, xs):
    dh_out_BxH, h_prev_BxH, act = xs
    r, z, n, h_n = jnp.split(act, 4, axis=-1)
    dh_BxH = dh_BxH + dh_out_BxH
    dan = dh_BxH * (1.0 - z) * (1.0 - n * n)           # d pre-activation of n
    dar = dan * h_n * r * (1.0 - r)
    daz = dh_BxH * (h_prev_BxH - n) * z * (1.0 - z)
    dxw_BxG = jnp.concatenate([dar, daz, dan], axis=-1)
    dhw_BxG = jnp.concatenate([dar, daz, dan * r], axis=-1)   # cotangent of h W_hh
    return dh_BxH * z + dhw_BxG @ w_hh_GxH, (dxw_BxG, dhw_BxG)

  dh0_BxH, (dxw_TxBxG, dhw_TxBxG) = jax.lax.scan(
      body, dh_T, (dh_TxBxH, h_prev_TxBxH, act_TxBx4H), reverse=True, unroll=unroll)
  hdim, gdim = w_hh_HxG.shape
  dw_HxG = h_prev_TxBxH.reshape(-1, hdim).T @ dhw_TxBxG.reshape(-1, gdim)
  return dw_HxG, dxw_TxBxG, dh0_BxH


gru_scan.defvjp(_gru_fwd, _gru_bwd)


# ------------------------------------------------------------------------- dispatcher
def fused_layer(cell: str, w_ih_DxG: Array, b_G: Array, w_hh_HxG: Array, x_BxTxD: Array,
                state0, unroll: int = 1):
  """Batch-major entry used by cells.RecurrentLayer when impl='fused': the whole layer
  (input projection and scan). state0: the cell's batched state (lstm: (h, c), gru: h).
  Returns (h_BxTxH, state_T)."""
  if cell == 'lstm':
    h_TxBxH, h_T, c_T = lstm_layer(w_ih_DxG, b_G, w_hh_HxG, x_BxTxD, state0[0], state0[1],
                                   unroll)
    return jnp.swapaxes(h_TxBxH, 0, 1), (h_T, c_T)
  if cell == 'gru':
    x_TxBxD = jnp.swapaxes(x_BxTxD, 0, 1)
    h_TxBxH, h_T = gru_scan(w_hh_HxG, x_TxBxD @ w_ih_DxG + b_G, state0, unroll)
    return jnp.swapaxes(h_TxBxH, 0, 1), h_T
  raise ValueError(f'no fused layer for cell {cell!r}; allowed: {", ".join(FAST_CELLS)}')
