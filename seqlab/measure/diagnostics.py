"""Gradient-flow diagnostics, usable on any model.

- grad_norm_by_position: ||dL/de_t|| for every position t in ONE backward pass,
  where e = model.embed_inputs(inputs) are the embedded inputs (Pascanu et al. 2013).
- state_jacobian_by_position: ||d(v . h_T)/dh_t|| for a random unit v, i.e. the norm
  of the product of state Jacobians applied to v, from one backward pass through a
  zero probe added to the state at every step (vector-Jacobian products).
- recurrent_spectra: spectral radius and largest singular value of every W_hh block.
- decay_rate_per_step: slope of log gradient norm against distance from the loss.
- measure_seeds: all of the above for several seeds in one jitted, vmapped call.
- impulse_response: r_t = ||h_t - h^0_t|| after a unit impulse at t=0 (the IIR-filter
  view: a recurrent network is an infinite-impulse-response filter); for a linear
  recurrence h_t = lambda * h_{t-1} + b_t each state channel answers exactly
  |lambda|^t |h_0 - h^0_0| (state_impulse_response, and the tests).

Shapes: B batch, T time, D embedding width, H hidden.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab import models
from seqlab.data import tasks
from seqlab.models import cells


def grad_norm_by_position(loss_of_e, e_BxTxD: jax.Array) -> jax.Array:
  """[T]: batch mean of ||d loss_b / d e_{b,t}||, with loss_of_e returning the
  per-example losses summed (so each example's gradient is its own)."""
  g_BxTxD = jax.grad(loss_of_e)(e_BxTxD)
  return jnp.linalg.norm(g_BxTxD.astype(jnp.float32), axis=-1).mean(0)


def model_input_grad_norms(model, batch: dict, task: tasks.Task) -> jax.Array:
  """[T] ||dL/de_t|| of the task's own loss (read at h_T for 'last' tasks, at every
  step for 'per_step' tasks) with respect to the embedded inputs."""
  b = batch['inputs'].shape[0]
  e = model.embed_inputs(batch['inputs'])

  def loss_of_e(e):
    outputs = model.head(model.features(e))
    return tasks.loss_and_metrics(task, outputs, batch)[0] * b

  return grad_norm_by_position(loss_of_e, e)


def state_jacobian_by_position(layer: cells.RecurrentLayer, x_BxTxD: jax.Array,
                               key: jax.Array) -> jax.Array:
  """[T]: batch mean of ||(dh_T/dh_t)^T v|| for a random unit vector v per example."""
  cell = cells.CELLS[layer.cell_name]
  p = layer.step_params()
  xw_TxBxG = jnp.swapaxes(layer.project(x_BxTxD), 0, 1)
  t, b = xw_TxBxG.shape[:2]
  h = layer.hidden
  v_BxH = jax.random.normal(key, (b, h))
  v_BxH = v_BxH / jnp.linalg.norm(v_BxH, axis=-1, keepdims=True)
  state0 = jax.vmap(lambda _: cell.zero_state(h, xw_TxBxG.dtype))(jnp.arange(b))
  step_B = jax.vmap(cell.step, in_axes=(None, 0, 0))

  def add_probe(state, probe_BxH):  # the probe enters where h does
    if isinstance(state, tuple):
      return (state[0] + probe_BxH,) + tuple(state[1:])
    return state + probe_BxH

  def final_projection(probes_TxBxH):
    def body(state, inp):
      xw_BxG, probe_BxH = inp
      return add_probe(step_B(p, state, xw_BxG), probe_BxH), None
    state_T, _ = jax.lax.scan(body, state0, (xw_TxBxG, probes_TxBxH))
    return jnp.sum(v_BxH * cell.readout(state_T))

  g_TxBxH = jax.grad(final_projection)(jnp.zeros((t, b, h), xw_TxBxG.dtype))
  return jnp.linalg.norm(g_TxBxH, axis=-1).mean(-1)


def recurrent_layers(model) -> list:
  stack = getattr(getattr(model, 'backbone', None), 'stack', None)
  return list(stack.layers) if stack is not None else []


def recurrent_spectra(model) -> dict:
  """Per layer, per gate block of W_hh: spectral radius and largest singular value."""
  radius, sigma = [], []
  for layer in recurrent_layers(model):
    w = np.asarray(layer.w_hh[...], np.float64)
    h = w.shape[0]
    blocks = [w[:, i * h:(i + 1) * h] for i in range(w.shape[1] // h)]
    radius.append([float(np.max(np.abs(np.linalg.eigvals(bk)))) for bk in blocks])
    sigma.append([float(np.linalg.svd(bk, compute_uv=False)[0]) for bk in blocks])
  return {'w_hh_spectral_radius': radius, 'w_hh_max_singular_value': sigma}


def by_distance(per_position_T) -> np.ndarray:
  """Reorders a per-position array [T] to distance from the last step: d = T-1-t."""
  return np.asarray(per_position_T)[..., ::-1]


def decay_rate_per_step(norm_by_distance, start: int = 1, floor: float = 1e-30) -> float:
  """Least-squares slope of log ||g|| against distance, over distances >= start where
  the norm is finite and above `floor` (below it float32 has underflowed).
  Negative: the gradient shrinks by exp(rate) per step; 0: no decay."""
  g = np.asarray(norm_by_distance, np.float64)
  d = np.arange(g.size)
  keep = (d >= start) & np.isfinite(g) & (g > floor)
  if keep.sum() < 2:
    return float('nan')
  return float(np.polyfit(d[keep], np.log(g[keep]), 1)[0])


# ------------------------------------------------------------------ several seeds at once
def measure_seeds(cfg: models.ModelConfig, task: tasks.Task, seeds, seq_len: int,
                  batch_size: int, params_S=None) -> dict:
  """Diagnostics for every seed in one jitted, vmapped call (one compile for all
  seeds). With params_S None each seed's model is initialised eagerly, outside jit
  (seed s -> nnx.Rngs(params=s), as models.build), and the params are stacked;
  otherwise params_S holds trained parameters stacked over seeds. Initialising inside
  the jitted vmap (orthogonal init = LAPACK QR per gate block) deadlocked XLA's CPU
  runtime intermittently on this 2-core machine (jaxlib 0.10.2), so it stays outside."""
  abstract = nnx.eval_shape(lambda: models.SequenceModel(cfg, nnx.Rngs(0)))
  graphdef, _ = nnx.split(abstract, nnx.Param)
  batch_S = {k: jnp.stack([jnp.asarray(task.batch(s, 0, batch_size, seq_len, tasks.EVAL)[k])
                           for s in seeds]) for k in task.batch(0, 0, 1, seq_len)}
  keys_S = jnp.stack([jax.random.key(int(s)) for s in seeds])
  if params_S is None:
    params_S = jax.tree.map(lambda *a: jnp.stack(a), *[
        nnx.split(models.build(cfg, int(s)), nnx.Param)[1] for s in seeds])

  def one(key, params, batch):
    model = models.merge(graphdef, params)   # the compute dtype
    out = {"grad": model_input_grad_norms(model, batch, task), "params": params}
    layers = recurrent_layers(model)
    if layers:
      out["state_jacobian"] = state_jacobian_by_position(
          layers[0], model.embed_inputs(batch['inputs']), jax.random.fold_in(key, 1))
    return out

  out = jax.jit(jax.vmap(one))(keys_S, params_S, batch_S)
  out = jax.device_get(out)
  out['graphdef'] = graphdef
  return out


# ------------------------------------------------------------------------ impulse response
def impulse_inputs(key: jax.Array, directions: int, seq_len: int, d: int) -> jax.Array:
  """e [K, T, D]: a random unit vector at t=0, zeros after."""
  u_KxD = jax.random.normal(key, (directions, d))
  u_KxD = u_KxD / jnp.linalg.norm(u_KxD, axis=-1, keepdims=True)
  return jnp.zeros((directions, seq_len, d)).at[:, 0].set(u_KxD)


def impulse_response(model: models.SequenceModel, seq_len: int, key: jax.Array,
                     directions: int = 8) -> jax.Array:
  """r_t = ||backbone(e)_t - backbone(0)_t||, mean over K impulses: [T]."""
  d, dtype = model.cfg.hidden, jnp.dtype(model.cfg.dtype)
  e_KxTxD = impulse_inputs(key, directions, seq_len, d).astype(dtype)
  h_KxTxD = model.backbone(e_KxTxD, causal=True).astype(jnp.float32)
  h0_1xTxD = model.backbone(jnp.zeros((1, seq_len, d), dtype), causal=True).astype(jnp.float32)
  return jnp.linalg.norm(h_KxTxD - h0_1xTxD, axis=-1).mean(axis=0)


def state_impulse_response(layer, e_KxTxD: jax.Array) -> jax.Array:
  """|h_t - h^0_t| per state channel of one linear-recurrent layer: [K, T, N]."""
  h = layer.states(e_KxTxD)
  h0 = layer.states(jnp.zeros_like(e_KxTxD[:1]))
  return jnp.abs(h - h0)
