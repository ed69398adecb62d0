"""The IIR-filter view: the impulse response of every model's backbone at
initialisation, beside the gradient-norm-by-distance curve of the grad_flow study.

A unit impulse u (||u|| = 1) in the embedded-input space at t=0, zeros after; r_t =
||h_t - h^0_t|| of the backbone output (h^0: the response to all-zero input), the mean
over `impulse.directions` random impulses, normalised by r_0
(seqlab.measure.diagnostics.impulse_response). One results.jsonl line per
(model, T, seed); panel (b) reads the grad_flow study's results beside this workdir
(../grad_flow/results.jsonl), drawn when they exist.
"""
from __future__ import annotations

import os
import sys
import math
import time
from collections import defaultdict

import jax
import numpy as np
from flax import nnx

from seqlab import models, sweep, train
from seqlab.data import tasks
from seqlab.infra import writer
from seqlab.measure import diagnostics
from seqlab.studies import plot_style, stats, study

NAME = 'impulse'
TITLE = 'Impulse responses: the IIR-filter view'
CAPTIONS = {'impulse': '(a) impulse response r_t / r_0 at initialisation, mean over seeds; '
                       '(b) the grad_flow study\'s gradient norm by distance at init.'}


def validate(config) -> None:
  sweep.validate(config)


def run(config, workdir: str) -> list[dict]:
  """Every (model, T, seed) not yet in workdir/results.jsonl, then the figure."""
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)  # matplotlib's PDF font subsetting logs at INFO
  validate(config)
  t0 = time.time()
  task = tasks.build(config.task)
  done = sweep.finished(workdir)
  for p in sweep.points(config):
    name = sweep.point_name(p)
    if name in done:
      continue
    c = sweep.point_config(config, p)
    cfg = train.model_config(c, task, p['seq_len'])
    m = models.merge(*nnx.split(models.build(cfg, p['seed'])))   # in the compute dtype
    r = np.asarray(diagnostics.impulse_response(m, p['seq_len'], jax.random.key(p['seed']),
                                                int(config.impulse.directions)), np.float64)
    sweep.record(workdir, p, {
        'hidden': cfg.hidden, 'response_at_0': float(r[0]),
        'impulse_response': [float(f'{x:.6g}') for x in r / max(r[0], 1e-30)]})
    print(f'[{time.time() - t0:6.1f}s] impulse {name}: r_T/r_0 = {r[-1] / max(r[0], 1e-30):.3g}',
          flush=True)
  return study.finish(sys.modules[__name__], workdir)


def rows(workdir: str) -> list[dict]:
  return writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))


def grad_flow_rows(workdir: str) -> list[dict]:
  """The grad_flow study's results beside this workdir (panel b), or []."""
  return writer.read_jsonl(os.path.join(os.path.dirname(os.path.abspath(workdir)), 'grad_flow',
                                        'results.jsonl'))


def _at_end(rows) -> tuple[int, dict[str, stats.Interval]]:
  """(longest T, model -> r_{T-1} / r_0 at that T, mean over seeds with its 95% interval)."""
  t = max(r['seq_len'] for r in rows)
  end = defaultdict(list)
  for r in rows:
    if r['seq_len'] == t:
      end[r['model']].append(r['impulse_response'][-1])
  return t, {m: stats.mean_ci(v, bounds=(0.0, math.inf)) for m, v in end.items()}


def power_slope(response) -> float:
  """The slope of log r_t on log t over t = 1..T-1 where r_t > 0 (-1: r_t ~ 1/t)."""
  r = np.asarray(response[1:], np.float64)
  t = np.arange(1, len(response), dtype=np.float64)
  ok = r > 0
  return float(np.polyfit(np.log(t[ok]), np.log(r[ok]), 1)[0]) if ok.sum() >= 2 else math.nan


def table(rows) -> str:
  if not rows:
    return '(no results)'
  t, end = _at_end(rows)
  lines = [f'| model | r_t / r_0 at t={t - 1} (T={t}) [95% CI] | at t=10 | log-log slope of r_t |',
           '|---|---|---|---|']
  for m, v in end.items():
    mine = [r for r in rows if r['model'] == m and r['seq_len'] == t]
    at10 = stats.mean_ci([r['impulse_response'][min(10, t - 1)] for r in mine],
                         bounds=(0.0, math.inf))
    slope = stats.mean_ci([power_slope(r['impulse_response']) for r in mine])
    lines.append(f'| {m} | {v.fmt()} | {at10.fmt()} | {slope.fmt("+.2f")} |')
  lines.append(f'\nMean over {len({r["seed"] for r in rows})} seeds at initialisation, 95% '
               f't-interval; 0: below float32\'s range (underflow).')
  return '\n'.join(lines)


def claims(rows) -> list[study.Claim]:
  if not rows:
    return []
  t, end = _at_end(rows)
  shorter = [m for m in dict.fromkeys(r['model'] for r in rows) if m not in end]
  slope = {m: stats.mean_ci([power_slope(r['impulse_response']) for r in rows
                             if r['model'] == m and r['seq_len'] == t]) for m in end}
  att = [m for m in end if m.split(':')[0] == 'transformer']
  return [study.measured(
      'A recurrent network is an IIR filter: a unit impulse at t=0 echoes through its state, '
      'decaying as |lambda|^t for the linear recurrences (exact, tested) and at a measured rate '
      'for the gated and tanh cells. Attention has no recurrent state, but a causal attention '
      'layer passes the impulse to every later position through its average over the prefix.',
      f'At initialisation, T={t}, response at t=T-1 relative to t=0 (mean over seeds, 95% '
      f'interval; 0: float32 underflow): ' + ', '.join(f'{m} {v.fmt()}' for m, v in end.items())
      + '.' + ''.join(f' {m}: log-log slope of r_t against t {slope[m].fmt("+.2f")} (-1 is '
                      f'1/t: the average over a growing prefix), not a geometric decay.'
                      for m in att)
      + (f' Not measured at T={t}: {", ".join(shorter)}.' if shorter else ''))]


def draw(workdir: str) -> list[str]:
  """(a) impulse response r_t / r_0 against t, longest T, mean over seeds, per model;
  (b) grad_flow's ||dL/dx_t|| against distance T-t at initialisation (if it was run)."""
  import matplotlib.pyplot as plt
  plot_style.apply()
  rs, grad_rows = rows(workdir), grad_flow_rows(workdir)
  if not rs:
    return []
  panels = 2 if grad_rows else 1
  fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4), squeeze=False)
  ax = axes[0, 0]
  for model in dict.fromkeys(r['model'] for r in rs):
    mine = [r for r in rs if r['model'] == model]
    t_max = max(r['seq_len'] for r in mine)
    curves = np.array([r['impulse_response'] for r in mine if r['seq_len'] == t_max])
    ax.plot(np.arange(t_max), curves.mean(0), color=plot_style.color(model), label=model)
  ax.set(yscale='log', xlabel='time t after the impulse',
         ylabel=r'$\|h_t - h^0_t\| / \|h_0 - h^0_0\|$',
         title='(a) impulse response at initialisation')
  ax.legend()
  if grad_rows:
    ax = axes[0, 1]
    init = [r for r in grad_rows if r.get('phase') == 'init' and r.get('sweep') == 'models']
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
  return plot_style.save(fig, os.path.join(workdir, 'figures', 'impulse'))
