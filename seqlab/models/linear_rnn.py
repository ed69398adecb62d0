"""Linear recurrences: the LRU (Orvieto et al. 2023) and minGRU (Feng et al. 2024).

Both are h_t = a_t * h_{t-1} + b_t, elementwise: a bank of first-order IIR filters
whose impulse response is prod(a)^t. Because the map h -> a h + b composes
associatively, (a1, b1) then (a2, b2) = (a1 a2, a2 b1 + b2), the sequence can be
computed with `jax.lax.associative_scan` in O(log T) depth (Blelloch 1990; Martin &
Cundy 2018) as well as with the sequential `jax.lax.scan` kept as the reference.
'parallel' runs the associative scan inside fixed chunks of CHUNK steps and carries the
state across chunks sequentially (depth log2 CHUNK + T / CHUNK), with the adjoint
recurrence as a hand-written backward. Against one associative scan over the whole
sequence, differentiated by JAX (train step of one layer, B=32, width 256, this 2-core
CPU): LRU 1.29x faster at T=1024 and 1.40x at 4096, minGRU 1.03-1.08x; compile time
at T=4096 over T=64 1.17x / 1.13x, where it was 1.9x / 2.1x (jax unrolls log2 T levels).

Shape letters: B batch, T time, D features (model width), N recurrent state size.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

Array = jax.Array
SCAN_IMPLS = ('sequential', 'parallel')
CHUNK = 64   # steps per chunk of the parallel scan


# ------------------------------------------------------------------------------ scans
def _combine(left, right):
  """(a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2 = (a1 a2) h + (a2 b1 + b2)."""
  a1, b1 = left
  a2, b2 = right
  return a1 * a2, a2 * b1 + b2


def linear_scan(a_BxTxN: Array, b_BxTxN: Array, h0_BxN: Array | None = None,
                impl: str = 'parallel', chunk: int = CHUNK) -> Array:
  """h_t = a_t * h_{t-1} + b_t for t = 1..T from h_0 = h0 (zeros if None): [B, T, N].
  impl 'sequential': lax.scan (the reference, differentiated by JAX); 'parallel':
  parallel_scan (associative scans in chunks, with a hand-written backward)."""
  if impl not in SCAN_IMPLS:
    raise ValueError(f'unknown scan_impl {impl!r}; allowed: {", ".join(SCAN_IMPLS)}')
  dtype = jnp.result_type(a_BxTxN, b_BxTxN)
  if h0_BxN is None:
    h0_BxN = jnp.zeros((b_BxTxN.shape[0], b_BxTxN.shape[2]), dtype)
  h0_BxN = h0_BxN.astype(dtype)
  if impl == 'sequential':
    def body(h_BxN, ab):
      h_BxN = ab[0] * h_BxN + ab[1]
      return h_BxN, h_BxN
    _, h_TxBxN = jax.lax.scan(body, h0_BxN, (jnp.swapaxes(a_BxTxN, 0, 1).astype(dtype),
                                             jnp.swapaxes(b_BxTxN, 0, 1)))
    return jnp.swapaxes(h_TxBxN, 0, 1)
  return parallel_scan(a_BxTxN.astype(dtype), b_BxTxN.astype(dtype), h0_BxN, chunk)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def parallel_scan(a_BxTxN: Array, b_BxTxN: Array, h0_BxN: Array, chunk: int = CHUNK) -> Array:
  """h_t = a_t h_{t-1} + b_t by _chunked_scan, with the adjoint recurrence as its
  backward. For the cotangents g_t of h_t from outside, the total cotangent of h_t
  through all later steps obeys lambda_t = g_t + a_{t+1} lambda_{t+1}: the same linear
  recurrence run backwards, so one more chunked scan, then db_t = lambda_t,
  da_t = lambda_t h_{t-1} and dh_0 = a_1 lambda_1 (JAX's VJP is the transpose of the
  linear map, unconjugated, so this holds for the complex LRU states too). Autodiff of
  the chunked scan instead carried the cotangents of the running products of a through
  every level of the associative scan."""
  return _chunked_scan(a_BxTxN, b_BxTxN, h0_BxN, chunk)


def _parallel_scan_fwd(a_BxTxN, b_BxTxN, h0_BxN, chunk):
  h_BxTxN = _chunked_scan(a_BxTxN, b_BxTxN, h0_BxN, chunk)
  return h_BxTxN, (a_BxTxN, h0_BxN, h_BxTxN)


def _parallel_scan_bwd(chunk, res, g_BxTxN):
  a_BxTxN, h0_BxN, h_BxTxN = res
  # the adjoint runs from the end with a_{t+1} (a_{T+1} = 1): flipped, a forward scan
  a_next_BxTxN = jnp.pad(a_BxTxN[:, 1:], ((0, 0), (0, 1), (0, 0)), constant_values=1)
  lam_BxTxN = _chunked_scan(a_next_BxTxN[:, ::-1], g_BxTxN[:, ::-1], jnp.zeros_like(h0_BxN),
                            chunk)[:, ::-1]
  h_prev_BxTxN = jnp.concatenate([h0_BxN[:, None], h_BxTxN[:, :-1]], axis=1)
  return lam_BxTxN * h_prev_BxTxN, lam_BxTxN, a_BxTxN[:, 0] * lam_BxTxN[:, 0]


parallel_scan.defvjp(_parallel_scan_fwd, _parallel_scan_bwd)


def _chunked_scan(a_BxTxN, b_BxTxN, h0_BxN, chunk):
  """The parallel scan in two levels (as in Mamba-2's chunked scan, Dao & Gu 2024):
  an associative scan inside every chunk of C = min(chunk, T) steps at once, then a
  sequential scan over the T / C chunk ends carrying the state from chunk to chunk.
  The tail chunk is padded with the identity (a = 1, b = 0). Returns h [B, T, N].

  Depth log2(C) + T / C. The point of the fixed C: jax traces associative_scan as
  log2(length) unrolled levels, so a whole-sequence scan's program (and compile time)
  grew with T.
  """
  bsz, t, n = b_BxTxN.shape
  c = min(chunk, t)
  nc = -(-t // c)
  pad = ((0, 0), (0, nc * c - t), (0, 0))
  a_BxKxCxN = jnp.pad(a_BxTxN, pad, constant_values=1).reshape(bsz, nc, c, n)
  b_BxKxCxN = jnp.pad(b_BxTxN, pad).reshape(bsz, nc, c, n)
  # within chunk k: h = A h_(entering k) + H, A the running product of a
  a_cum, h_loc = jax.lax.associative_scan(_combine, (a_BxKxCxN, b_BxKxCxN), axis=2)

  def carry(h_BxN, ends):                     # the state entering each chunk
    a_end_BxN, h_end_BxN = ends
    return a_end_BxN * h_BxN + h_end_BxN, h_BxN
  _, h_in_KxBxN = jax.lax.scan(carry, h0_BxN, (jnp.swapaxes(a_cum[:, :, -1], 0, 1),
                                               jnp.swapaxes(h_loc[:, :, -1], 0, 1)))
  h_BxKxCxN = a_cum * jnp.swapaxes(h_in_KxBxN, 0, 1)[:, :, None] + h_loc
  return h_BxKxCxN.reshape(bsz, nc * c, n)[:, :t]


# ---------------------------------------------------------------------------------- LRU
def ring_init(key: Array, n: int, r_min: float, r_max: float, max_phase: float):
  """nu_log, theta_log [N] with |lambda| uniform on the ring r_min <= r <= r_max
  (uniform in area: r^2 ~ U[r_min^2, r_max^2]) and phase ~ U[0, max_phase]
  (Orvieto et al. 2023, Lemma 3.2)."""
  k1, k2 = jax.random.split(key)
  u1, u2 = jax.random.uniform(k1, (n,)), jax.random.uniform(k2, (n,))
  nu = -0.5 * jnp.log(u1 * (r_max ** 2 - r_min ** 2) + r_min ** 2)
  theta = u2 * max_phase
  return jnp.log(nu), jnp.log(theta)


class LRULayer(nnx.Module):
  """Pre-norm residual block: x + GLU(GELU(Re(C h) + D u)), u = LayerNorm(x), with
  h_t = lambda * h_{t-1} + gamma * (B u_t) and lambda = exp(-exp(nu_log) + i exp(theta_log))
  (Orvieto et al. 2023, eq. 6-7 and Fig. 1: the recurrence is linear, the MLP after it
  gives the nonlinearity)."""

  def __init__(self, d: int, n: int, *, rngs: nnx.Rngs, r_min: float = 0.0,
               r_max: float = 1.0, max_phase: float = 2 * np.pi, scan_impl: str = 'parallel'):
    self.scan_impl = scan_impl
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    nu_log, theta_log = ring_init(rngs.params(), n, r_min, r_max, max_phase)
    self.nu_log = nnx.Param(nu_log)
    self.theta_log = nnx.Param(theta_log)
    # gamma = sqrt(1 - |lambda|^2) keeps E|h|^2 equal to E|Bu|^2 for white input.
    self.gamma_log = nnx.Param(0.5 * jnp.log(1.0 - jnp.exp(-2.0 * jnp.exp(nu_log))))
    glorot = lambda shape, fan_in: jax.random.normal(rngs.params(), shape) / np.sqrt(2 * fan_in)
    self.b_re, self.b_im = nnx.Param(glorot((d, n), d)), nnx.Param(glorot((d, n), d))
    self.c_re, self.c_im = nnx.Param(glorot((n, d), n)), nnx.Param(glorot((n, d), n))
    self.d = nnx.Param(jax.random.normal(rngs.params(), (d,)))
    self.glu = nnx.Linear(d, 2 * d, rngs=rngs)

  def eigenvalues(self) -> Array:
    """lambda [N], complex, |lambda| = exp(-exp(nu_log)) < 1."""
    return jnp.exp(-jnp.exp(self.nu_log[...]) + 1j * jnp.exp(self.theta_log[...]))

  def states(self, x_BxTxD: Array, h0_BxN: Array | None = None) -> Array:
    """The recurrent states h [B, T, N] (complex) of the normalised input."""
    u_BxTxD = self.norm(x_BxTxD)
    bu_BxTxN = (u_BxTxD @ self.b_re[...] + 1j * (u_BxTxD @ self.b_im[...]))
    bu_BxTxN = bu_BxTxN * jnp.exp(self.gamma_log[...])
    lam_N = self.eigenvalues()
    a_BxTxN = jnp.broadcast_to(lam_N, bu_BxTxN.shape)
    return linear_scan(a_BxTxN, bu_BxTxN, h0_BxN, self.scan_impl)

  def _output(self, x: Array, h: Array) -> Array:
    """x + GLU(GELU(Re(C h) + D u)) for inputs x [..., D] and states h [..., N]. The
    complex state stays complex64 (JAX has no half-precision complex); the read-out is
    back in x's dtype."""
    y = (h.real.astype(x.dtype) @ self.c_re[...] - h.imag.astype(x.dtype) @ self.c_im[...]
         + self.d[...] * self.norm(x))
    value, gate = jnp.split(self.glu(jax.nn.gelu(y)), 2, axis=-1)
    return x + value * jax.nn.sigmoid(gate)

  def __call__(self, x_BxTxD: Array, h0_BxN: Array | None = None) -> Array:
    return self._output(x_BxTxD, self.states(x_BxTxD, h0_BxN))

  def zero_state(self, batch: int, dtype) -> Array:
    del dtype  # the state is complex
    return jnp.zeros((batch, self.nu_log.shape[0]), jnp.complex64)

  def prefill(self, x_BxTxD: Array, h0_BxN: Array):
    h_BxTxN = self.states(x_BxTxD, h0_BxN)
    return self._output(x_BxTxD, h_BxTxN), h_BxTxN[:, -1]

  def step(self, x_BxD: Array, h_BxN: Array):
    """One step (decoding): h = lambda h + gamma B u, then the read-out."""
    u_BxD = self.norm(x_BxD)
    bu_BxN = (u_BxD @ self.b_re[...] + 1j * (u_BxD @ self.b_im[...])) * jnp.exp(self.gamma_log[...])
    h_BxN = self.eigenvalues() * h_BxN + bu_BxN
    return self._output(x_BxD, h_BxN), h_BxN


# ------------------------------------------------------------------------------- minGRU
class MinGRULayer(nnx.Module):
  """minGRU (Feng et al. 2024, Sec. 3.1): z_t = sigmoid(W_z x_t), h~_t = W_h x_t,
  h_t = (1 - z_t) h_{t-1} + z_t h~_t. The gates see only x, so h_t is linear in h and
  a_t = 1 - z_t, b_t = z_t h~_t. Stacked as x + minGRU(LayerNorm(x)), as in the paper's
  residual models."""

  def __init__(self, d: int, n: int, *, rngs: nnx.Rngs, scan_impl: str = 'parallel'):
    self.scan_impl = scan_impl
    self.norm = nnx.LayerNorm(d, rngs=rngs)
    self.gate = nnx.Linear(d, n, rngs=rngs)
    self.candidate = nnx.Linear(d, n, rngs=rngs)
    self.out = nnx.Linear(n, d, rngs=rngs)

  def coefficients(self, x_BxTxD: Array) -> tuple[Array, Array]:
    u_BxTxD = self.norm(x_BxTxD)
    z_BxTxN = jax.nn.sigmoid(self.gate(u_BxTxD))
    return 1.0 - z_BxTxN, z_BxTxN * self.candidate(u_BxTxD)

  def states(self, x_BxTxD: Array, h0_BxN: Array | None = None) -> Array:
    a_BxTxN, b_BxTxN = self.coefficients(x_BxTxD)
    return linear_scan(a_BxTxN, b_BxTxN, h0_BxN, self.scan_impl)

  def __call__(self, x_BxTxD: Array, h0_BxN: Array | None = None) -> Array:
    return x_BxTxD + self.out(self.states(x_BxTxD, h0_BxN))

  def zero_state(self, batch: int, dtype) -> Array:
    return jnp.zeros((batch, self.out.in_features), dtype)

  def prefill(self, x_BxTxD: Array, h0_BxN: Array):
    h_BxTxN = self.states(x_BxTxD, h0_BxN)
    return x_BxTxD + self.out(h_BxTxN), h_BxTxN[:, -1]

  def step(self, x_BxD: Array, h_BxN: Array):
    """One step (decoding): h = (1 - z) h + z h~."""
    a_BxN, b_BxN = self.coefficients(x_BxD)
    h_BxN = a_BxN * h_BxN + b_BxN
    return x_BxD + self.out(h_BxN), h_BxN


class LinearRecurrentBackbone(nnx.Module):
  """`layers` LRU or minGRU residual blocks; causal by construction. No final norm, like
  the cell stacks: a LayerNorm after the residual stream is scale-invariant, so it
  would report a decayed echo of an impulse as undecayed (seqlab.impulse)."""
  is_recurrent = True

  def __init__(self, cfg, rngs: nnx.Rngs):
    scan_impl = cfg.kernel   # resolved by seqlab.models.backbone
    if scan_impl not in SCAN_IMPLS:
      raise ValueError(f'unknown kernel {scan_impl!r} for {cfg.name}; allowed: '
                       f'{", ".join(SCAN_IMPLS)}')
    if cfg.name == 'lru':
      make = lambda: LRULayer(cfg.hidden, cfg.hidden, rngs=rngs, r_min=cfg.r_min,
                              r_max=cfg.r_max, max_phase=cfg.max_phase, scan_impl=scan_impl)
    else:
      make = lambda: MinGRULayer(cfg.hidden, cfg.hidden, rngs=rngs, scan_impl=scan_impl)
    self.layers = nnx.List([make() for _ in range(cfg.layers)])

  def __call__(self, e_BxTxD: Array, causal: bool = True, states0=None) -> Array:
    h = e_BxTxD
    for i, layer in enumerate(self.layers):
      h = layer(h, None if states0 is None else states0[i])
    return h

  # Decoding (seqlab.models.SequenceModel.prefill / decode): a fixed-size state per layer.
  def init_state(self, batch: int, max_len: int, dtype) -> list:
    del max_len  # the state does not grow with the context
    return [layer.zero_state(batch, dtype) for layer in self.layers]

  def prefill(self, e_BxTxD: Array, states: list):
    h, out = e_BxTxD, []
    for layer, s in zip(self.layers, states):
      h, s = layer.prefill(h, s)
      out.append(s)
    return h, out

  def step(self, e_BxD: Array, states: list, pos: Array):
    del pos
    h, out = e_BxD, []
    for layer, s in zip(self.layers, states):
      h, s = layer.step(h, s)
      out.append(s)
    return h, out
