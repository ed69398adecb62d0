"""The gradient-flow study: how the gradient reaching position t decays with its
distance T-t from the loss, per model, at initialisation and after training, and for
the tanh RNN as the recurrent spectral radius rho varies (Pascanu et al. 2013).

Three sweeps, all written to one results.jsonl (one line per model x T x seed x phase):
  init     every model x seq_len, all seeds measured in ONE compiled, vmapped call
  trained  every model at grad_flow.train_seq_len after grad_flow.train_steps steps of
           seqlab.train on config.task (the one training loop), then measured
  rho      the rnn at grad_flow.rho_seq_len for each rho in grad_flow.rhos
Figures (a)-(d), the table and the claims read results.jsonl and train/*/metrics.jsonl.
"""
from __future__ import annotations

import math
import os
import sys
import time
import warnings
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab import jobs, models, sweep, train
from seqlab.data import tasks
from seqlab.infra import storage, writer
from seqlab.measure import diagnostics
from seqlab.studies import plot_style, study

NAME = 'grad_flow'
TITLE = 'Gradient flow'
FLAT = 0.01   # |decay rate| below this per step counts as "flat"
TOL = 0.01    # per step: the slack of the rho claim's comparisons


def point_name(task: str, sweep_name: str, phase: str, model: str, seq_len: int, seed: int,
               rho: float | None = None) -> str:
  """The results.jsonl key of one measurement; resume skips the names already there."""
  return (f'{task}-{sweep_name}-{phase}-{model}-T{seq_len}-s{seed}' +
          (f'-rho{rho:g}' if rho is not None else ''))


def train_dir(workdir: str, task: str, model: str, seq_len: int, seed: int) -> str:
  """Where the trained phase's run of (model, seed) lives (figure (c) reads it)."""
  return os.path.join(workdir, 'train', f'{model}-T{seq_len}-s{seed}-{task}')


def _round(xs):
  return [float(f'{x:.6g}') for x in np.asarray(xs, np.float64).tolist()]


def validate(config) -> None:
  sweep.validate(config)
  if len(config.sweep.tasks) != 1:
    raise sweep.ConfigError(
        f'tasks={",".join(config.sweep.tasks)}: the grad_flow study measures one task per '
        f'workdir; pass one --tasks value (e.g. recall for the loss at h_T, kback for the '
        f'per-step loss)')


def run(config, workdir: str) -> list[dict]:
  """Measures every point not yet in workdir/results.jsonl, then draws the figures and
  prints the table. Returns all result rows."""
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs each checkpoint save at INFO
  # The trained phase runs seqlab.train once per seed, each building its own jitted
  # step with the same HLO: the persistent cache compiles it once per model, not per
  # seed (and a re-run compiles nothing).
  jobs.compile_cache(workdir)
  validate(config)
  t0 = time.time()
  gf, sw = config.grad_flow, config.sweep
  # --tasks picks the loss: read at h_T (recall) or at every step (kback)
  config = sweep.point_config(config, {'task': sw.tasks[0]})
  task = tasks.build(config.task)
  seeds = [int(s) for s in sw.seeds]
  results = os.path.join(workdir, 'results.jsonl')
  done = sweep.finished(workdir)
  rows = list(done.values())

  def record(new_rows):
    for r in new_rows:
      if writer.is_writer():
        writer.append_jsonl_atomic(results, r)
      rows.append(r)

  def todo(*key, rho=None):
    return [s for s in seeds if point_name(task.name, *key, s, rho) not in done]

  # 1) at initialisation, every model x T, seeds vmapped
  for model in sw.models:
    for seq_len in (int(t) for t in sw.seq_lens):
      if not todo('models', 'init', model, seq_len):
        continue
      c = sweep.point_config(config, {'model': model, 'seq_len': seq_len})
      cfg = train.model_config(c, task, seq_len)
      out = diagnostics.measure_seeds(cfg, task, seeds, seq_len, gf.batch_size)
      record(rows_for(out, cfg, task, seeds, seq_len, 'init', 'models'))
      _progress(rows[-1], t0)

  # 2) after training, every model at train_seq_len (the one training loop)
  if gf.train_steps > 0:
    t_len = int(gf.train_seq_len)
    for model in sw.models:
      if not todo('models', 'trained', model, t_len):
        continue
      params, extra = [], []
      for s in seeds:
        c = sweep.point_config(config, {'model': model, 'seq_len': t_len, 'seed': s})
        with c.unlocked():
          c.train.steps = gf.train_steps
        result, graphdef, p = train.train(c, train_dir(workdir, task.name, model, t_len, s),
                                          return_params=True, verbose=False)
        params.append(p)
        extra.append({'train_steps': gf.train_steps, 'train_final_loss': result['final_loss'],
                      'chance_loss': result['chance_loss']})
      cfg = train.model_config(c, task, t_len)
      params_S = jax.tree.map(lambda *a: jnp.stack(a), *params)
      out = diagnostics.measure_seeds(cfg, task, seeds, t_len, gf.batch_size, params_S=params_S)
      record(rows_for(out, cfg, task, seeds, t_len, 'trained', 'models', extra))
      _progress(rows[-1], t0)

  # 3) the rnn's spectral radius
  for rho in gf.rhos:
    r_len = int(gf.rho_seq_len)
    if not todo('rho', 'init', 'rnn', r_len, rho=rho):
      continue
    c = sweep.point_config(config, {'model': 'rnn', 'seq_len': r_len},
                           spectral_radius=float(rho), recurrent_init='orthogonal')
    cfg = train.model_config(c, task, r_len)
    out = diagnostics.measure_seeds(cfg, task, seeds, r_len, gf.batch_size)
    record(rows_for(out, cfg, task, seeds, r_len, 'init', 'rho'))
    _progress(rows[-1], t0)

  study.finish(sys.modules[__name__], workdir)
  print(f'({time.time() - t0:.0f} s)')
  return rows


def _progress(row, t0):
  print(f'[{time.time() - t0:6.1f}s] {row["sweep"]}/{row["phase"]} {row["model"]} '
        f'T={row["seq_len"]}: decay rate {row["decay_rate_per_step"]:+.4f}/step, '
        f'||dL/dx_1|| = {row["grad_norm_first"]:.3g}', flush=True)


def rows_for(out, cfg, task, seeds, seq_len, phase, sweep_name, extra=None) -> list[dict]:
  rows = []
  for i, seed in enumerate(seeds):
    g = diagnostics.by_distance(out['grad'][i])
    params = jax.tree.map(lambda a: a[i], out['params'])
    spectra = diagnostics.recurrent_spectra(nnx.merge(out['graphdef'], params))
    row = {
        'point': point_name(task.name, sweep_name, phase, cfg.name, seq_len, seed,
                            cfg.spectral_radius if sweep_name == 'rho' else None),
        'sweep': sweep_name, 'phase': phase, 'model': cfg.name, 'task': task.name,
        'seq_len': seq_len, 'seed': int(seed), 'hidden': cfg.hidden,
        'num_params': models.count_params(params),
        'spectral_radius': cfg.spectral_radius if cfg.name in ('rnn', 'lstm', 'gru') else None,
        'grad_norm_by_distance': _round(g), 'grad_norm_first': float(g[-1]),
        'grad_norm_last': float(g[0]),
        'decay_rate_per_step': diagnostics.decay_rate_per_step(g),
        **spectra, **(extra[i] if extra else {}),
    }
    if 'state_jacobian' in out:
      j = diagnostics.by_distance(out['state_jacobian'][i])
      row['state_jacobian_by_distance'] = _round(j)
      row['state_decay_rate_per_step'] = diagnostics.decay_rate_per_step(j)
    rows.append(row)
  return rows

# ------------------------------------------------------------ figures, table and claims
def _stats(vals):
  a = np.asarray([v for v in vals if v is not None and math.isfinite(v)], np.float64)
  return (a.mean(), a.std()) if a.size else (float('nan'), float('nan'))


def _geo_mean(vals):
  return float(np.exp(np.mean(np.log(vals)))) if vals else float('nan')


def _models(rows):
  return list(dict.fromkeys(r['model'] for r in rows))


def _select(rows, **kw):
  return [r for r in rows if all(r.get(k) == v for k, v in kw.items())]


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
  for ax, (title, sel, t) in zip(axes[0], panels):
    for m in _models(sel):
      curves = [r['grad_norm_by_distance'] for r in sel if r['model'] == m]
      mean, lo, hi = _geo_band(curves)
      d = np.arange(len(mean))
      c = plot_style.color(m)
      ax.plot(d, mean, color=c, label=m)
      ax.fill_between(d, lo, hi, color=c, alpha=0.2, linewidth=0)
    ax.set_yscale('log')
    ax.set_xlabel('distance from the loss, T - t')
    ax.set_title(f'{title}, T={t}')
  axes[0][0].set_ylabel(r'$\|\partial L/\partial x_t\|$')
  axes[0][-1].legend(loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


def grad_flow_b(rows, out_stem):
  import matplotlib.pyplot as plt
  sel = _select(rows, sweep='models', phase='init')
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  for m in _models(sel):
    by_t = defaultdict(list)
    for r in sel:
      if r['model'] == m:
        by_t[r['seq_len']].append(r['grad_norm_first'])
    ts = sorted(by_t)
    n_seeds = min(len(by_t[t]) for t in ts)
    mean, lo, hi = _geo_band(np.array([by_t[t][:n_seeds] for t in ts]).T)  # [seeds, T]
    plot_style.band(ax, ts, mean, lo, hi, m)
  ax.set_xscale('log')
  ax.set_yscale('log')
  plot_style.log_ticks(ax, [r['seq_len'] for r in sel])
  ax.set_xlabel('sequence length T')
  ax.set_ylabel(r'$\|\partial L/\partial x_1\|$ at init')
  ax.legend(loc='center left', bbox_to_anchor=(1.0, 0.5))
  return plot_style.save(fig, out_stem)


def training_curves(workdir):
  """model -> list over seeds of (steps, grad_norm) from train/*/metrics.jsonl."""
  out = defaultdict(list)
  for d in storage.glob(os.path.join(workdir, 'train'), '*'):
    model = os.path.basename(d).split('-T')[0]
    ms = [r for r in writer.read_jsonl(os.path.join(d, 'metrics.jsonl')) if 'grad_norm' in r]
    if ms:
      out[model].append((np.array([r['step'] for r in ms]),
                         np.array([r['grad_norm'] if r['grad_norm'] is not None else np.nan
                                   for r in ms])))
  return out


def grad_flow_c(workdir, out_stem):
  import matplotlib.pyplot as plt
  curves = training_curves(workdir)
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

def rows(workdir: str) -> list[dict]:
  return writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))


def table(rows) -> str:
  """One line per (sweep, phase, model, T, rho): decay rate per step (mean ± std over
  seeds), ||dL/dx_1|| (geometric mean; 0 where float32 underflowed) and the state
  Jacobian's decay rate."""
  lines = ['| sweep | phase | model | T | rho | decay/step | ‖dL/dx_1‖ | state decay/step |',
           '|---|---|---|---|---|---|---|---|']
  groups = defaultdict(list)
  for r in rows:
    groups[(r['sweep'], r['phase'], r['model'], r['seq_len'], r.get('spectral_radius'))].append(r)
  for (sw, ph, m, t, rho), rs in groups.items():
    dm, ds = _stats([r['decay_rate_per_step'] for r in rs])
    firsts = [r['grad_norm_first'] for r in rs]
    g1 = '0 (underflow)' if min(firsts) <= 0 else f'{np.exp(np.mean(np.log(firsts))):.3g}'
    sm, _ = _stats([r.get('state_decay_rate_per_step') for r in rs])
    sm_s = '-' if not math.isfinite(sm) else f'{sm:+.4f}'
    rho_s = f'{rho:g}' if (sw == 'rho' and rho is not None) else '-'
    lines.append(f'| {sw} | {ph} | {m} | {t} | {rho_s} | {dm:+.4f} ± {ds:.4f} | {g1} | {sm_s} |')
  return '\n'.join(lines)


def claims(rows) -> list[study.Claim]:
  out = []
  rho_rows = _select(rows, sweep='rho')
  if rho_rows:
    pairs = []
    for rho in sorted({r['spectral_radius'] for r in rho_rows}):
      m, _ = _stats([r['decay_rate_per_step'] for r in rho_rows if r['spectral_radius'] == rho])
      pairs.append((rho, m))
    rates = [m for _, m in pairs]
    out.append(study.claim(
        'A tanh RNN\'s gradient decays with distance at a rate per step set by the recurrent '
        'spectral radius rho: at or below the linear theory log rho at every rho, and slower '
        'as rho grows.',
        {'at or below log rho at every rho': all(m <= math.log(rho) + TOL for rho, m in pairs),
         'slower decay as rho grows': len(pairs) > 1 and rates[-1] > rates[0] + TOL and all(
             b >= a - TOL for a, b in zip(rates, rates[1:]))},
        f'Measured decay per step (T={rho_rows[0]["seq_len"]}, mean over seeds) vs log rho: ' +
        ', '.join(f'rho={rho:g}: {m:+.4f} vs {math.log(rho):+.4f}' for rho, m in pairs) +
        f'. Slack {TOL:g}/step: at or below log rho + {TOL:g}; slower as rho grows: never '
        f'faster by more than {TOL:g} from one rho to the next, and slower by more than '
        f'{TOL:g} at the largest rho than at the smallest (two rhos at least).'))
  init = _select(rows, sweep='models', phase='init')
  if init:
    t = max(r['seq_len'] for r in init)
    rate = {m: _stats([r['decay_rate_per_step'] for r in init if r['model'] == m and
                       r['seq_len'] == t])[0] for m in _models(init)}
    first = {m: _geo_mean([max(r['grad_norm_first'], 1e-45) for r in init
                           if r['model'] == m and r['seq_len'] == t]) for m in _models(init)}
    txt = ', '.join(f'{m} {rate[m]:+.4f}/step (||dL/dx_1|| {first[m]:.2g})' for m in rate)
    if 'rnn' in rate and ('lstm' in rate or 'gru' in rate):
      # both gated cells are named in the claim: one not measured does not hold
      out.append(study.claim(
          f'Gating (LSTM, GRU) slows the decay relative to the tanh RNN (at init, T={t}).',
          {f'{m} decays slower than the rnn': m in rate and rate[m] > rate['rnn']
           for m in ('lstm', 'gru')},
          f'Decay rates (nan: no finite rate at T={t}): {txt}' +
          ''.join(f'; {m} not measured' for m in ('lstm', 'gru') if m not in rate) +
          '. A GRU with zero update-gate bias starts with z ~ 1/2, so its '
          'state Jacobian is about I/2 + W/4 (|eig| <= 3/4, log 0.75 = -0.29); the LSTM\'s '
          'forget bias of 1 keeps its cell path open.'))
    if 'transformer' in rate:
      out.append(study.claim(
          f'Attention gives every position a short path: the transformer\'s gradient stays '
          f'flat with distance (|rate| < {FLAT}/step, at init, T={t}).',
          {'the transformer is flat': abs(rate['transformer']) < FLAT},
          f'transformer {rate["transformer"]:+.4f}/step.'))
  return out


CAPTIONS = {
    'grad_flow_a': 'Gradient norm against distance from the loss (geometric mean over seeds, '
                   'band min-max), at initialisation and after training; a curve ends where '
                   'float32 underflows to 0.',
    'grad_flow_b': 'Gradient reaching the first position against sequence length, at init '
                   '(points that underflow to 0 are not drawn).',
    'grad_flow_c': 'Global gradient norm over training steps (band over seeds).',
    'grad_flow_d': 'tanh RNN decay rate per step against the recurrent spectral radius, with '
                   'the linear-theory line log rho.',
}


def draw(workdir: str) -> list[str]:
  plot_style.apply()
  rs = rows(workdir)
  figs_dir = os.path.join(workdir, 'figures')
  figures = []
  if _select(rs, sweep='models'):
    figures += grad_flow_a(rs, os.path.join(figs_dir, 'grad_flow_a'))
    figures += grad_flow_b(rs, os.path.join(figs_dir, 'grad_flow_b'))
  figures += grad_flow_c(workdir, os.path.join(figs_dir, 'grad_flow_c'))
  figures += grad_flow_d(rs, os.path.join(figs_dir, 'grad_flow_d'))
  return figures
