"""Gradient-flow diagnostics, usable on any model.

- grad_norm_by_position: ||dL/de_t|| for every position t in ONE backward pass,
  where e = model.embed_inputs(inputs) are the embedded inputs (Pascanu et al. 2013).
- state_jacobian_by_position: ||d(v . h_T)/dh_t|| for a random unit v, i.e. the norm
  of the product of state Jacobians applied to v, from one backward pass through a
  zero probe added to the state at every step (vector-Jacobian products).
- recurrent_spectra: spectral radius and largest singular value of every W_hh block.
- decay_rate_per_step: slope of log gradient norm against distance from the loss.

Shapes: B batch, T time, D embedding width, H hidden.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from seqlab import cells, tasks


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
