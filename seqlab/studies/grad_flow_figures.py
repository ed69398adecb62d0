"""The gradient-flow study's figures (a)-(d), drawn from its results rows alone
(seqlab.studies.grad_flow.draw calls them)."""
from __future__ import annotations

import warnings
from collections import defaultdict

import numpy as np

from seqlab.studies import plot_style
from seqlab.studies.grad_flow import _models, _select, never_left_chance


def _geo_band(curves):
  """Geometric mean and min/max over seeds of positive curves (log-scale plots)."""
  a = np.asarray(curves, np.float64)
  a = np.where(a > 0, a, np.nan)  # 0: float32 underflow, left out of the log plot
  with np.errstate(all='ignore'), warnings.catch_warnings():
    warnings.simplefilter('ignore', RuntimeWarning)  # all-underflow distances: NaN, not drawn
    return np.exp(np.nanmean(np.log(a), 0)), np.nanmin(a, 0), np.nanmax(a, 0)


def grad_flow_a(rows, out_stem):
  import matplotlib.pyplot as plt
  init_ts = sorted({r['seq_len'] for r in _select(rows, sweep='models', phase='init')})
  t_init = max([t for t in init_ts if t <= 256] or init_ts)
  trained = _select(rows, sweep='models', phase='trained')
  panels = [('at initialisation', _select(rows, sweep='models', phase='init', seq_len=t_init),
             t_init)]
  if trained:
    t_tr = trained[0]['seq_len']
    panels.append((f'after {trained[0].get("train_steps", "?")} steps on '
                   f'{trained[0]["task"]}', trained, t_tr))
  fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 2.6), squeeze=False)
  underflow = False
  for ax, (title, sel, t) in zip(axes[0], panels):
    for m in _models(sel):
      mine = [r for r in sel if r['model'] == m]
      curves = [r['grad_norm_by_distance'] for r in mine]
      mean, lo, hi = _geo_band(curves)
      d = np.arange(len(mean))
      c = plot_style.color(m)
      label = m
      if any(r.get('phase') == 'trained' and never_left_chance(r) for r in mine):
        label = f'{m} (never left chance)'
      ax.plot(d, mean, color=c, label=label)
      ax.fill_between(d, lo, hi, color=c, alpha=0.2, linewidth=0)
      zero = np.where(np.all(np.asarray(curves) <= 0, axis=0))[0]
      if zero.size:   # float32 underflow: 0, drawn on the bottom edge where it starts
        ax.plot([zero[0]], [0], marker='v', color=c, ms=5, clip_on=False,
                transform=ax.get_xaxis_transform())
        underflow = True
    ax.set_yscale('log')
    ax.set_xlabel('distance from the loss, T - t')
    ax.set_title(f'{title}, T={t}')
  axes[0][0].set_ylabel(r'$\|\partial L/\partial x_t\|$')
  if underflow:
    axes[0][-1].plot([], [], 'v', color='0.3', ms=5, label='0 (float32 underflow) from here')
  axes[0][-1].legend(loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


def grad_flow_b(rows, out_stem):
  import matplotlib.pyplot as plt
  sel = _select(rows, sweep='models', phase='init')
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  underflow = False
  for m in _models(sel):
    by_t = defaultdict(list)
    for r in sel:
      if r['model'] == m:
        by_t[r['seq_len']].append(r['grad_norm_first'])
    ts = sorted(by_t)
    n_seeds = min(len(by_t[t]) for t in ts)
    mean, lo, hi = _geo_band(np.array([by_t[t][:n_seeds] for t in ts]).T)  # [seeds, T]
    plot_style.band(ax, ts, mean, lo, hi, m)
    zero = [t for t in ts if max(by_t[t]) <= 0]
    if zero:   # every seed underflowed to 0: a marker on the bottom edge, not a gap
      ax.plot(zero, [0] * len(zero), 'v', color=plot_style.color(m), ms=5, clip_on=False,
              transform=ax.get_xaxis_transform())
      underflow = True
  if underflow:
    ax.plot([], [], 'v', color='0.3', ms=5, label='0 (float32 underflow)')
  ax.set_xscale('log')
  ax.set_yscale('log')
  plot_style.log_ticks(ax, [r['seq_len'] for r in sel])
  ax.set_xlabel('sequence length T')
  ax.set_ylabel(r'$\|\partial L/\partial x_1\|$ at init')
  ax.legend(loc='center left', bbox_to_anchor=(1.0, 0.5))
  return plot_style.save(fig, out_stem)


def training_curves(rows):
  """model -> list over seeds of (steps, grad_norm), from the trained rows' curve digest."""
  out = defaultdict(list)
  for r in _select(rows, sweep='models', phase='trained'):
    c = r.get('train_curve')
    if c:
      out[r['model']].append((np.array(c['step']), np.array(
          [np.nan if g is None else g for g in c['grad_norm']], np.float64)))
  return out


def grad_flow_c(rows, out_stem):
  import matplotlib.pyplot as plt
  curves = training_curves(rows)
  if not curves:
    return []
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  order = {m: i for i, m in enumerate(plot_style.MODEL_COLORS)}
  for m, runs in sorted(curves.items(), key=lambda kv: order.get(kv[0], len(order))):
    n = min(len(s) for s, _ in runs)
    mean, lo, hi = _geo_band([g[:n] for _, g in runs])
    c = plot_style.color(m)
    ax.plot(runs[0][0][:n], mean, color=c, label=m)
    ax.fill_between(runs[0][0][:n], lo, hi, color=c, alpha=0.2, linewidth=0)
  ax.set_yscale('log')
  ax.set_xlabel('training step')
  ax.set_ylabel('global gradient norm')
  ax.legend(loc='center left', bbox_to_anchor=(1.0, 0.5))
  return plot_style.save(fig, out_stem)


def grad_flow_d(rows, out_stem):
  import matplotlib.pyplot as plt
  sel = _select(rows, sweep='rho')
  if not sel:
    return []
  rhos = sorted({r['spectral_radius'] for r in sel})
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  rnn_c = plot_style.color('rnn')
  for key, label, style in (
      ('decay_rate_per_step', r'tanh RNN: $\|\partial L/\partial x_t\|$',
       dict(ls='-', marker=plot_style.marker('rnn'), color=rnn_c, ms=6)),
      ('state_decay_rate_per_step', r'tanh RNN: $\|\partial h_T/\partial h_t\|$',
       dict(ls='--', marker='x', color='0.35', ms=7))):
    vals = [[r[key] for r in sel if r['spectral_radius'] == rho] for rho in rhos]
    mean = [np.nanmean(v) for v in vals]
    ax.plot(rhos, mean, label=label, **style)
    ax.fill_between(rhos, [np.nanmin(v) for v in vals], [np.nanmax(v) for v in vals],
                    color=style['color'], alpha=0.2, linewidth=0)
  grid = np.linspace(min(rhos), max(rhos), 100)
  ax.plot(grid, np.log(grid), color='k', lw=1.0, label=r'linear theory: $\log\rho$')
  ax.axhline(0, color='k', lw=0.5, ls=':')
  ax.set_xlabel(r'recurrent spectral radius $\rho$ at init')
  ax.set_ylabel('decay rate per step')
  ax.set_title(f'T={sel[0]["seq_len"]}')
  ax.legend(loc='lower right')
  return plot_style.save(fig, out_stem)
