"""The IIR-filter view: the impulse response of any model's backbone.

A recurrent network is an infinite-impulse-response filter. Feeding a unit impulse
e_0 = u (||u|| = 1, zeros after) in the embedded-input space and subtracting the
response to all-zero input, h^0, gives r_t = ||h_t - h^0_t||: how long one input
echoes. For a linear recurrence h_t = lambda * h_{t-1} + b_t each state channel
answers exactly |lambda|^t |h_0 - h^0_0| (`state_impulse_response` and the tests);
for tanh RNN/LSTM/GRU and attention r_t is measured.

The study writes one results.jsonl line per (model, T, seed) with `impulse_response`
(mean over `directions` random unit impulses, normalised by r_0) and draws it beside
the gradient-norm-by-distance curve of the grad_flow study when its results exist.
"""
from __future__ import annotations

import copy
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from seqlab import models, sweep, tasks, train, writer


def impulse_inputs(key: jax.Array, directions: int, seq_len: int, d: int) -> jax.Array:
  """e [K, T, D]: a random unit vector at t=0, zeros after."""
  u_KxD = jax.random.normal(key, (directions, d))
  u_KxD = u_KxD / jnp.linalg.norm(u_KxD, axis=-1, keepdims=True)
  return jnp.zeros((directions, seq_len, d)).at[:, 0].set(u_KxD)


def impulse_response(model: models.SequenceModel, seq_len: int, key: jax.Array,
                     directions: int = 8) -> jax.Array:
  """r_t = ||backbone(e)_t - backbone(0)_t||, mean over K impulses: [T]."""
  d = model.cfg.hidden
  e_KxTxD = impulse_inputs(key, directions, seq_len, d)
  h_KxTxD = model.backbone(e_KxTxD, causal=True)
  h0_1xTxD = model.backbone(jnp.zeros((1, seq_len, d)), causal=True)
  return jnp.linalg.norm(h_KxTxD - h0_1xTxD, axis=-1).mean(axis=0)


def state_impulse_response(layer, e_KxTxD: jax.Array) -> jax.Array:
  """|h_t - h^0_t| per state channel of one linear-recurrent layer: [K, T, N]."""
  h = layer.states(e_KxTxD)
  h0 = layer.states(jnp.zeros_like(e_KxTxD[:1]))
  return jnp.abs(h - h0)


# ---------------------------------------------------------------------------------- study
def _point_config(config, model: str, seq_len: int, seed: int):
  c = copy.deepcopy(config)
  with c.unlocked():
    c.model.name, c.task.seq_len, c.seed = model, seq_len, seed
  return c


def run(config, workdir: str) -> list[dict]:
  """Every (model, T, seed) not yet in workdir/results.jsonl, then the figure."""
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)  # matplotlib's PDF font subsetting logs at INFO
  sweep.validate(config)
  t0 = time.time()
  sw = config.sweep
  task = tasks.build(config.task)
  done = sweep.finished(workdir)
  rows = list(done.values())
  for seq_len in sw.seq_lens:
    for model in sw.models:
      for seed in sw.seeds:
        p = dict(model=model, task=config.task.name, seq_len=int(seq_len), seed=int(seed))
        if sweep.point_name(p) in done:
          continue
        cfg = train.model_config(_point_config(config, model, int(seq_len), int(seed)),
                                 task, int(seq_len))
        m = models.build(cfg, int(seed))
        r = np.asarray(impulse_response(m, int(seq_len), jax.random.key(int(seed)),
                                        int(config.impulse.directions)), np.float64)
        rows.append(sweep.record(workdir, p, {
            'model': model, 'seq_len': int(seq_len), 'seed': int(seed), 'hidden': cfg.hidden,
            'response_at_0': float(r[0]),
            'impulse_response': [float(f'{x:.6g}') for x in r / max(r[0], 1e-30)]}))
        print(f'[{time.time() - t0:6.1f}s] impulse {sweep.point_name(p)}: '
              f'r_T/r_0 = {r[-1] / max(r[0], 1e-30):.3g}', flush=True)
  if writer.is_writer():
    grad_rows = writer.read_jsonl(config.impulse.grad_flow_results)
    for path in plot(rows, grad_rows, os.path.join(workdir, 'figures')):
      print('figure:', path)
  return rows


def plot(rows: list[dict], grad_rows: list[dict], out_dir: str) -> list[str]:
  """(a) impulse response r_t / r_0 against t, longest T, mean over seeds, per model;
  (b) grad_flow's ||dL/dx_t|| against distance T-t at initialisation (if given)."""
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt

  from seqlab import plot_style
  plot_style.apply()
  panels = 2 if grad_rows else 1
  fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
  ax = axes[0, 0]
  for model in dict.fromkeys(r['model'] for r in rows):
    mine = [r for r in rows if r['model'] == model]
    t_max = max(r['seq_len'] for r in mine)
    curves = np.array([r['impulse_response'] for r in mine if r['seq_len'] == t_max])
    ax.plot(np.arange(t_max), curves.mean(0), color=plot_style.color(model), label=model)
  ax.set(yscale='log', xlabel='time t after the impulse',
         ylabel=r'$\|h_t - h^0_t\| / \|h_0 - h^0_0\|$',
         title='(a) impulse response at initialisation')
  ax.legend()
  if grad_rows:
    ax = axes[0, 1]
    init = [r for r in grad_rows if r.get('phase') == 'init' and 'grad_norm_by_distance' in r
            and '-models-' in r.get('point', '-models-')]
    for model in dict.fromkeys(r['model'] for r in init):
      mine = [r for r in init if r['model'] == model]
      t_max = max(r['seq_len'] for r in mine)
      curves = np.array([r['grad_norm_by_distance'] for r in mine if r['seq_len'] == t_max])
      ax.plot(np.arange(curves.shape[1]), curves.mean(0), color=plot_style.color(model),
              label=f'{model} (T={t_max})')
    ax.set(yscale='log', xlabel='distance T - t', ylabel=r'$\|\partial L / \partial x_t\|$',
           title='(b) gradient norm by distance (grad_flow, init)')
    ax.legend()
  fig.tight_layout()
  return plot_style.save(fig, os.path.join(out_dir, 'impulse'))
