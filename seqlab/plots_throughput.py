"""Figures of the throughput study, read only from workdir/results.jsonl.

throughput_a: tokens/s against T (log-log), train and inference.
throughput_b: train step time against T with the fitted log-log slope per model
              (about 1 for recurrences, tending to 2 for attention at long T).
throughput_c: peak memory (XLA memory analysis of the train step) against T.
The crossover T where causal attention becomes slower than the LSTM is marked on a and b.
"""
from __future__ import annotations

import math
import os

import numpy as np

from seqlab import plot_style, writer


def _series(rows, key):
  out = {}
  for r in rows:
    if r.get('status') == 'ok' and r.get(key):
      out.setdefault(r['model'], []).append((r['seq_len'], r[key]))
  return {m: sorted(v) for m, v in out.items()}


def fitted_slope(points) -> float:
  """Slope of log(y) on log(T) over the longer half of the points (at least 2)."""
  start = len(points) // 2 - (len(points) % 2 == 0 and len(points) > 2)
  pts = points[max(0, min(start, len(points) - 2)):]
  if len(pts) < 2:
    return float('nan')
  x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
  return float(np.polyfit(x, y, 1)[0])


def crossover_t(rows, attention_model: str, lstm_model: str) -> float | None:
  """The T (interpolated in log T) where attention's train tokens/s falls below the LSTM's."""
  s = _series(rows, 'tokens_per_s_train')
  a, l = dict(s.get(attention_model, [])), dict(s.get(lstm_model, []))
  ts = sorted(set(a) & set(l))
  prev = None
  for t in ts:
    d = math.log(a[t] / l[t])
    if prev is not None and prev[1] > 0 >= d:
      t0, d0 = prev
      return float(math.exp(math.log(t0) + (math.log(t) - math.log(t0)) * d0 / (d0 - d)))
    if prev is None and d <= 0:
      return float(t)
    prev = (t, d)
  return None


def _pick(models, prefs):
  return next((m for m in prefs if m in models), None)


def plot_all(workdir: str) -> list[str]:
  import logging
  import matplotlib.pyplot as plt
  logging.getLogger('fontTools').setLevel(logging.WARNING)   # PDF font subsetting chatter
  plot_style.apply()
  rows = writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
  if not any(r.get('status') == 'ok' for r in rows):
    return []
  figdir = os.path.join(workdir, 'figures')
  models = {r['model'] for r in rows}
  attn = _pick(models, ['attention:blocked', 'attention:einsum', 'transformer'])
  lstm = _pick(models, ['lstm:fused', 'lstm'])
  cross = crossover_t(rows, attn, lstm) if attn and lstm else None
  baselines = ('flax_lstm', 'jax_attention', 'torch_lstm', 'torch_sdpa')
  # Colour and marker by model; line by implementation: the reference solid, the fast
  # variants (fused, blocked, parallel) dashed, the others (einsum, sequential) dash-dot,
  # baselines dotted; a layer split over devices ('@2') has hollow markers.
  def linestyle(m):
    if m in baselines:
      return ':'
    impl = m.split(':', 1)[1] if ':' in m else ''
    return '-' if not impl else '-.' if impl in ('einsum', 'sequential') else '--'

  def style(m):
    layer, split, _ = m.partition('@')
    return dict(color=plot_style.color(layer), marker=plot_style.marker(layer),
                linestyle=linestyle(layer), **({'markerfacecolor': 'none'} if split else {}))
  seq_lens = sorted({r['seq_len'] for r in rows if r.get('status') == 'ok'})
  outside = dict(loc='upper left', bbox_to_anchor=(1.02, 1.0), fontsize=6, frameon=False)
  paths = []
  fig, axes = plt.subplots(1, 2, figsize=plot_style.WIDE)
  fig.subplots_adjust(wspace=0.35)
  for ax, key, title in zip(axes, ['tokens_per_s_train', 'tokens_per_s_infer'],
                            ['train step', 'inference']):
    for m, pts in sorted(_series(rows, key).items()):
      ax.plot(*zip(*pts), label=m, **style(m))
    ax.set(xscale='log', yscale='log', xlabel='sequence length T', ylabel='tokens / s',
           title=title)
    plot_style.log_ticks(ax, seq_lens)
    plot_style.plain_log_labels(ax)
    if cross:
      ax.axvline(cross, color='k', linewidth=0.8, linestyle=':')
      ax.annotate(f'{attn} slower than {lstm}\nfrom T≈{cross:.0f}', (cross, ax.get_ylim()[0]),
                  fontsize=6, xytext=(3, 3), textcoords='offset points')
  axes[1].legend(**outside)
  paths += plot_style.save(fig, os.path.join(figdir, 'throughput_a'))
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  for m, pts in sorted(_series(rows, 'step_ms').items()):
    ax.plot(*zip(*pts), label=f'{m} (slope {fitted_slope(pts):.2f})', **style(m))
  if cross:
    ax.axvline(cross, color='k', linewidth=0.8, linestyle=':')
  ax.set(xscale='log', yscale='log', xlabel='sequence length T', ylabel='train step (ms)')
  plot_style.log_ticks(ax, seq_lens)
  plot_style.plain_log_labels(ax)
  ax.legend(**outside)
  paths += plot_style.save(fig, os.path.join(figdir, 'throughput_b'))
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  for m, pts in sorted(_series(rows, 'peak_memory_bytes').items()):
    ax.plot([p[0] for p in pts], [p[1] / 2 ** 20 for p in pts], label=m, **style(m))
  ax.set(xscale='log', yscale='log', xlabel='sequence length T',
         ylabel='peak memory, train step (MiB)')
  plot_style.log_ticks(ax, seq_lens)
  plot_style.plain_log_labels(ax)
  ax.legend(**outside)
  paths += plot_style.save(fig, os.path.join(figdir, 'throughput_c'))
  return paths
