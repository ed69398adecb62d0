"""Recurrent cells as pure one-step functions, and the scanned layer stack.

Shape letters (used once per module, then as suffixes): B batch, T time, D input
features, H hidden units, G gate width (H for rnn, 3H for gru, 4H for lstm).

A cell is one step for one example: `h_t = step(params, h_prev, xw_t)`, where
`xw_t = x_t @ w_ih + b` is the input projection, computed for every step outside
the scan in one matrix product (the hoisted projection of cuDNN's RNNs). The scan
runs the step over time and `jax.vmap` runs it over the batch at the call site.
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


# ----------------------------------------------------------------------------- steps
def rnn_step(p: dict, h_H: Array, xw_H: Array) -> Array:
  """Elman RNN: h_t = tanh(W_x x_t + b + W_h h_{t-1})."""
  return jnp.tanh(xw_H + h_H @ p['w_hh'])


def lstm_step(p: dict, hc: tuple[Array, Array], xw_G: Array) -> tuple[Array, Array]:
  """LSTM (Hochreiter & Schmidhuber 1997), gates in flax's order i, f, g, o."""
  h_H, c_H = hc
  i, f, g, o = jnp.split(xw_G + h_H @ p['w_hh'], 4, axis=-1)
  c_H = jax.nn.sigmoid(f) * c_H + jax.nn.sigmoid(i) * jnp.tanh(g)
  h_H = jax.nn.sigmoid(o) * jnp.tanh(c_H)
  return h_H, c_H


def gru_step(p: dict, h_H: Array, xw_G: Array) -> Array:
  """GRU (Cho et al. 2014) in flax's form: n = tanh(x_n + r * (W_hn h))."""
  x_r, x_z, x_n = jnp.split(xw_G, 3, axis=-1)
  h_r, h_z, h_n = jnp.split(h_H @ p['w_hh'], 3, axis=-1)
  r = jax.nn.sigmoid(x_r + h_r)
  z = jax.nn.sigmoid(x_z + h_z)
  n = jnp.tanh(x_n + r * h_n)
  return (1.0 - z) * n + z * h_H


def linear_step(p: dict, h_H: Array, xw_H: Array) -> Array:
  """Linear recurrence h_t = W h_{t-1} + U x_t + b: the exact case of gradient
  theory (||dh_T/dh_t|| = rho^(T-t) for W = rho Q). Used by diagnostics and tests."""
  return xw_H + h_H @ p['w_hh']


class Cell(NamedTuple):
  step: Callable          # (params, state, xw) -> state
  gates: int              # G / H
  readout: Callable       # state -> h (the features a layer emits)
  zero_state: Callable    # (hidden, dtype) -> state for one example


CELLS: dict[str, Cell] = {
    'rnn': Cell(rnn_step, 1, lambda s: s, lambda n, dt: jnp.zeros((n,), dt)),
    'lstm': Cell(lstm_step, 4, lambda s: s[0],
                 lambda n, dt: (jnp.zeros((n,), dt), jnp.zeros((n,), dt))),
    'gru': Cell(gru_step, 3, lambda s: s, lambda n, dt: jnp.zeros((n,), dt)),
    'linear': Cell(linear_step, 1, lambda s: s, lambda n, dt: jnp.zeros((n,), dt)),
}


# ------------------------------------------------------------------------ initialisers
RECURRENT_INITS = ('orthogonal', 'lecun_normal', 'identity')


def recurrent_init(kind: str, spectral_radius: float, key: Array, hidden: int,
                   gates: int) -> Array:
  """W_hh [H, G]: one H x H block per gate, each with the given spectral radius.

  'orthogonal' is rho * Q with Q orthogonal, so every eigenvalue has modulus rho
  (Saxe et al. 2014); 'identity' is rho * I (Le et al. 2015, IRNN); 'lecun_normal'
  is the usual N(0, 1/H) whose spectral radius is about 1 for large H and is not rescaled.
  """
  keys = jax.random.split(key, gates)
  blocks = []
  for k in keys:
    if kind == 'orthogonal':
      blocks.append(spectral_radius * jax.nn.initializers.orthogonal()(k, (hidden, hidden)))
    elif kind == 'identity':
      blocks.append(spectral_radius * jnp.eye(hidden))
    elif kind == 'lecun_normal':
      blocks.append(jax.nn.initializers.lecun_normal()(k, (hidden, hidden)))
    else:
      raise ValueError(f'unknown recurrent_init {kind!r}; allowed: {", ".join(RECURRENT_INITS)}')
  return jnp.concatenate(blocks, axis=1)


GATE_INITS = ('constant', 'chrono')


def gate_bias(cell: str, hidden: int, key: Array, *, forget_bias: float = 1.0,
              gate_init: str = 'constant', chrono_t_max: int = 0,
              update_bias: float = 0.0) -> Array:
  """The bias b [G] of a layer's gates (the input projection's bias).

  'constant': zeros but the LSTM's forget gate, forget_bias (Gers et al. 2000), and the
  GRU's update gate, update_bias. 'chrono' (Tallec & Ollivier 2018, "Can recurrent
  neural networks warp time?"): the gate that keeps the state starts with
  b ~ log(U[1, T_max - 1]), so the units' time constants spread over 1..T_max: the
  LSTM's forget gate (and its input gate at -b_f), the GRU's update gate z (here
  h_t = (1 - z) n + z h_{t-1}, so z keeps the state).
  """
  if gate_init not in GATE_INITS:
    raise ValueError(f'model.gate_init={gate_init!r}; allowed: {", ".join(GATE_INITS)}')
  bias = jnp.zeros((CELLS[cell].gates * hidden,))
  if gate_init == 'chrono' and cell in ('lstm', 'gru'):
    t_max = max(float(chrono_t_max), 3.0)
    keep = jnp.log(jax.random.uniform(key, (hidden,), minval=1.0, maxval=t_max - 1.0))
    if cell == 'lstm':   # gates i, f, g, o
      return bias.at[hidden:2 * hidden].set(keep).at[:hidden].set(-keep)
    return bias.at[hidden:2 * hidden].set(keep)   # gru: r, z, n
  if cell == 'lstm':
    bias = bias.at[hidden:2 * hidden].set(forget_bias)
  if cell == 'gru':
    bias = bias.at[hidden:2 * hidden].set(update_bias)
  return bias


# ------------------------------------------------------------------------------ layers
class RecurrentLayer(nnx.Module):
  """One recurrent layer: hoisted input projection, then `lax.scan` of the cell."""

  def __init__(self, cell: str, in_features: int, hidden: int, *, rngs: nnx.Rngs,
               init: str = 'orthogonal', spectral_radius: float = 1.0,
               forget_bias: float = 1.0, unroll: int = 1, impl: str = 'scan',
               gate_init: str = 'constant', chrono_t_max: int = 0, update_bias: float = 0.0):
    self.cell_name = cell
    self.hidden = hidden
    self.unroll = unroll
    # 'scan' is the reference below; 'fused' is fast_rnn's custom-vjp scan (lstm, gru).
    self.impl = impl if cell in ('lstm', 'gru') else 'scan'   # resolved: seqlab.models.KERNELS
    g = CELLS[cell].gates * hidden
    k_ih = rngs.params()
    self.w_ih = nnx.Param(jax.nn.initializers.lecun_normal()(k_ih, (in_features, g)))
    # chrono's key is folded from w_ih's, drawing nothing more from rngs: every other
    # parameter is the constant init's, so an init control changes the gate biases alone
    self.b = nnx.Param(gate_bias(
        cell, hidden, jax.random.fold_in(k_ih, 1),
        forget_bias=forget_bias, gate_init=gate_init, chrono_t_max=chrono_t_max,
        update_bias=update_bias))
    self.w_hh = nnx.Param(recurrent_init(init, spectral_radius, rngs.params(), hidden,
                                         CELLS[cell].gates))

  def step_params(self) -> dict:
    return {'w_hh': self.w_hh[...]}

  def project(self, x_BxTxD: Array) -> Array:
    """The input projection of every step in one matrix product: [B, T, G]."""
    return x_BxTxD @ self.w_ih[...] + self.b[...]

  def zero_state(self, batch: int, dtype):
    """The cell's zero state for `batch` examples."""
    return jax.vmap(lambda _: CELLS[self.cell_name].zero_state(self.hidden, dtype))(
        jnp.arange(batch))

  def scan(self, xw_BxTxG: Array, state0=None):
    """Runs the cell over time. Returns (h_BxTxH, final state)."""
    cell = CELLS[self.cell_name]
    b = xw_BxTxG.shape[0]
    if state0 is None:
      state0 = self.zero_state(b, xw_BxTxG.dtype)
    p = self.step_params()
    step_B = jax.vmap(cell.step, in_axes=(None, 0, 0))

    def body(state, xw_BxG):
      state = step_B(p, state, xw_BxG)
      return state, cell.readout(state)

    state_T, h_TxBxH = jax.lax.scan(body, state0, jnp.swapaxes(xw_BxTxG, 0, 1),
                                    unroll=self.unroll)
    return jnp.swapaxes(h_TxBxH, 0, 1), state_T

  def __call__(self, x_BxTxD: Array, state0=None):
    if self.impl == 'cudnn':   # the LSTM through cuDNN on a GPU (models.vendor_kernels)
      from seqlab.models import vendor_kernels
      if vendor_kernels.cudnn_lstm_serves():
        if state0 is None:
          state0 = self.zero_state(x_BxTxD.shape[0], x_BxTxD.dtype)
        return vendor_kernels.cudnn_lstm(self.w_ih[...], self.b[...], self.w_hh[...], x_BxTxD,
                                         state0)
    if self.impl == 'fused':
      from seqlab.models import fused_rnn
      if state0 is None:
        state0 = self.zero_state(x_BxTxD.shape[0], x_BxTxD.dtype)
      return fused_rnn.fused_layer(self.cell_name, self.w_ih[...], self.b[...], self.w_hh[...],
                                  x_BxTxD, state0, self.unroll)
    return self.scan(self.project(x_BxTxD), state0)

  def step(self, x_BxD: Array, state):
    """One time step for a batch (decoding): (h_BxH, new state). The reference cell step
    whatever the kernel: 'fused' computes the same recurrence."""
    cell = CELLS[self.cell_name]
    xw_BxG = x_BxD @ self.w_ih[...] + self.b[...]
    state = jax.vmap(cell.step, in_axes=(None, 0, 0))(self.step_params(), state, xw_BxG)
    return cell.readout(state), state


class RecurrentStack(nnx.Module):
  """`layers` recurrent layers; emits the top layer's h at every step [B, T, H]."""

  def __init__(self, cell: str, in_features: int, hidden: int, layers: int, *,
               rngs: nnx.Rngs, **layer_kw):
    self.layers = nnx.List([
        RecurrentLayer(cell, in_features if i == 0 else hidden, hidden, rngs=rngs, **layer_kw)
        for i in range(layers)])

  def __call__(self, x_BxTxD: Array, states0=None) -> Array:
    return self.prefill(x_BxTxD, states0)[0]

  def zero_states(self, batch: int, dtype) -> list:
    return [layer.zero_state(batch, dtype) for layer in self.layers]

  def prefill(self, x_BxTxD: Array, states0=None):
    """(h_BxTxH of the top layer, every layer's state after the last step)."""
    h, states = x_BxTxD, []
    for i, layer in enumerate(self.layers):
      h, s = layer(h, None if states0 is None else states0[i])
      states.append(s)
    return h, states

  def step(self, x_BxD: Array, states: list):
    """One time step through every layer: (h_BxH of the top layer, new states)."""
    h, out = x_BxD, []
    for layer, s in zip(self.layers, states):
      h, s = layer.step(h, s)
      out.append(s)
    return h, out
