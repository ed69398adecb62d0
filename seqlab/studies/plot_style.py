"""One style for every figure in seqlab: model colours and markers, fonts, sizes.

Every study's plotting code calls `apply()`, takes colours from `color(model)` and
markers from `marker(model)`, and saves with `save(fig, path_without_suffix)` (PNG
and PDF). Sizes are for a two-column paper: COLUMN (one column) and WIDE (both).
Plots read only results files (results.jsonl), never training state.
"""
from __future__ import annotations

import io
import math
import os

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

from seqlab.infra import storage  # noqa: E402

COLUMN = (3.4, 2.6)   # inches: one column of a two-column paper
WIDE = (7.0, 2.8)     # inches: across both columns

# A fixed colour per model, the same in every figure (Okabe-Ito colour-blind-safe palette).
MODEL_COLORS = {
    'rnn': '#D55E00',          # vermillion
    'lstm': '#0072B2',         # blue
    'gru': '#009E73',          # green
    'transformer': '#CC79A7',  # purple
    'lru': '#E69F00',          # orange
    'mingru': '#56B4E9',       # sky blue
    'attention': '#CC79A7',    # the attention layer alone: the transformer's colour
    'flax_lstm': '#444444',    # baselines in greys, each with its own marker
    'torch_lstm': '#999999',
    'jax_attention': '#444444',
    'torch_sdpa': '#999999',
}
MODEL_MARKERS = {'rnn': 'o', 'lstm': 's', 'gru': '^', 'transformer': 'D', 'lru': 'v',
                 'mingru': 'P', 'attention': 'd', 'flax_lstm': 'x', 'torch_lstm': '+',
                 'jax_attention': '1', 'torch_sdpa': '*'}
_EXTRA = ['#000000', '#F0E442', '#7F7F7F', '#8C564B']


def _base(model: str) -> str:
  """'lstm:fused+chrono' -> 'lstm': an init control or kernel keeps its cell's colour."""
  return model.split('+')[0].split(':')[0].split('/')[0]


def color(model: str) -> str:
  base = _base(model)
  if base in MODEL_COLORS:
    return MODEL_COLORS[base]
  return _EXTRA[sum(map(ord, base)) % len(_EXTRA)]


def marker(model: str) -> str:
  return MODEL_MARKERS.get(_base(model), 'x')


def apply() -> None:
  import logging
  logging.getLogger('fontTools').setLevel(logging.WARNING)   # PDF font subsetting chatter
  plt.rcParams.update({
      'font.size': 8, 'axes.titlesize': 9, 'axes.labelsize': 8, 'legend.fontsize': 7,
      'xtick.labelsize': 7, 'ytick.labelsize': 7, 'lines.linewidth': 1.4,
      'lines.markersize': 3.5, 'axes.spines.top': False, 'axes.spines.right': False,
      'axes.grid': True, 'grid.alpha': 0.3, 'grid.linewidth': 0.5, 'legend.frameon': False,
      'savefig.dpi': 200, 'savefig.bbox': 'tight', 'pdf.fonttype': 42,
  })


def save(fig, path_stem: str) -> list[str]:
  """Writes path_stem.png and path_stem.pdf; returns both paths."""
  paths = [f'{path_stem}.png', f'{path_stem}.pdf']
  # no creation date: the same results redraw to the same bytes (a committed report
  # stays unchanged by a redraw)
  meta = {'png': None, 'pdf': {'CreationDate': None}}
  if storage.is_url(path_stem):  # matplotlib writes local files: render, then upload
    for p in paths:
      buf = io.BytesIO()
      fmt = p.rsplit('.', 1)[1]
      fig.savefig(buf, format=fmt, metadata=meta[fmt])
      storage.write_object(p, buf.getvalue())
  else:
    os.makedirs(os.path.dirname(os.path.abspath(path_stem)), exist_ok=True)
    for p in paths:
      fig.savefig(p, metadata=meta[p.rsplit('.', 1)[1]])
  plt.close(fig)
  return paths


def band(ax, x, mean, lo, hi, model: str, label: str | None = None, **kw):
  """A line with a shaded band (spread over seeds) in the model's colour."""
  c = color(model)
  ax.plot(x, mean, color=c, marker=marker(model), label=label or model, **kw)
  ax.fill_between(x, lo, hi, color=c, alpha=0.2, linewidth=0)


def log_ticks(ax, values, axis: str = 'x') -> None:
  """Ticks of a log axis at the measured values, labelled plainly (no 3x10^1)."""
  from matplotlib.ticker import FixedLocator, NullLocator, FixedFormatter
  vals = sorted(set(values))
  a = ax.xaxis if axis == 'x' else ax.yaxis
  a.set_major_locator(FixedLocator(vals))
  a.set_major_formatter(FixedFormatter([f'{v:g}' for v in vals]))
  a.set_minor_locator(NullLocator())


def plain_log_labels(ax, axis: str = 'y') -> None:
  """Labels a log axis 20, 300, 4k, 2M instead of 2x10^1, 3x10^2 ... (major and minor)."""
  from matplotlib.ticker import FuncFormatter

  def fmt(v, _):
    for scale, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
      if v >= scale:
        return f'{v / scale:g}{suffix}'
    return f'{v:g}'

  def fmt_minor(v, pos):  # only 2, 3 and 5 x 10^k among the minor ticks, so labels do not crowd
    mantissa = v / 10 ** math.floor(math.log10(v)) if v > 0 else 0
    return fmt(v, pos) if any(abs(mantissa - m) < 1e-6 for m in (2, 3, 5)) else ''
  a = ax.xaxis if axis == 'x' else ax.yaxis
  a.set_major_formatter(FuncFormatter(fmt))
  a.set_minor_formatter(FuncFormatter(fmt_minor))


def dense_log_labels(ax, axis: str = 'y') -> None:
  """Ticks of a log axis inside its current limits, as many as stay legible: every decade
  over more than 2.5 decades, 1, 2, 5 x 10^k over more than 1.2, else 1, 2, 3, 5 x 10^k
  (every 1..9 x 10^k when that leaves fewer than three), labelled plainly (20k, 50k, 100k):
  a panel spanning less than a decade still has labelled ticks. Call after plotting."""
  from matplotlib.ticker import FixedFormatter, FixedLocator, NullLocator
  lo, hi = ax.get_ylim() if axis == 'y' else ax.get_xlim()

  def ticks(mantissas):
    out = []
    for k in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
      out += [m * 10.0 ** k for m in mantissas if lo <= m * 10.0 ** k <= hi]
    return out
  span = math.log10(hi / lo)
  vals = ticks((1,) if span > 2.5 else (1, 2, 5) if span > 1.2 else (1, 2, 3, 5))
  if len(vals) < 3:
    vals = ticks(range(1, 10))

  def fmt(v):
    for scale, suffix in ((1e9, 'G'), (1e6, 'M'), (1e3, 'k')):
      if v >= scale:
        return f'{v / scale:g}{suffix}'
    return f'{v:g}'
  a = ax.xaxis if axis == 'x' else ax.yaxis
  a.set_major_locator(FixedLocator(vals))
  a.set_major_formatter(FixedFormatter([fmt(v) for v in vals]))
  a.set_minor_locator(NullLocator())
