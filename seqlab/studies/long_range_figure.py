"""The long-range study's figure, drawn from its rows alone (long_range.draw calls it)."""
from __future__ import annotations

import math
from collections import defaultdict

from seqlab.studies import plot_style
from seqlab.studies.long_range import SOLVED_FRACTION, family, longest_solved, ratio_ci


def figure(rows: list[dict], out_stem: str) -> list[str]:
  """Held-out loss / chance against T, one panel per task, one line per model, a band
  for the 95% interval of the mean, the chance level at 1 and the solved threshold."""
  import matplotlib.pyplot as plt
  plot_style.apply()
  tasks_ = list(dict.fromkeys(r['task'] for r in rows))
  fig, axes = plt.subplots(1, len(tasks_), figsize=(max(3.4, 2.6 * len(tasks_)), 2.6),
                           squeeze=False)
  marked = False
  for ax, task in zip(axes[0], tasks_):
    by_model = defaultdict(lambda: defaultdict(list))
    for r in rows:
      if r['task'] == task:
        by_model[r['model']][r['seq_len']].append(r)
    # an interval reaching below the smallest mean / 5 is drawn to the panel's bottom edge
    means = [ratio_ci(rs).value for by_t in by_model.values() for rs in by_t.values()]
    floor = min([v for v in means if 0 < v < math.inf] + [SOLVED_FRACTION]) / 5
    for i, (m, by_t) in enumerate(by_model.items()):
      ts = [t for t in sorted(by_t) if math.isfinite(ratio_ci(by_t[t]).value)]
      if not ts:
        continue
      ivs = [ratio_ci(by_t[t]) for t in ts]
      style = _line_style(m)
      plot_style.band(ax, ts, [v.value for v in ivs], [max(v.lo, floor) for v in ivs],
                      [v.hi for v in ivs], m, linestyle=style)
      t_best = longest_solved(rows, task, family(m), model=m)
      if t_best is not None:   # the longest T this model solves: a ring on its line
        ax.plot([t_best], [ratio_ci(by_t[t_best]).value], 'o', ms=11, mfc='none', mew=1.2,
                color=plot_style.color(m))
        marked = True
    ax.axhline(1.0, color='k', lw=0.8, ls='--', label='chance')
    ax.axhline(SOLVED_FRACTION, color='k', lw=0.6, ls=':', label='solved')
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_ylim(bottom=floor)
    plot_style.log_ticks(ax, [r['seq_len'] for r in rows if r['task'] == task])
    ax.set_title(task)
    ax.set_xlabel('sequence length T')
  axes[0][0].set_ylabel('held-out loss / chance')
  if marked:   # one neutral legend entry for the rings of every model
    axes[0][0].plot([], [], 'o', ms=8, mfc='none', mew=1.2, color='0.3',
                    label='longest T solved')
  legend = {}   # every panel's entries once
  for ax in axes[0]:
    for h, label in zip(*ax.get_legend_handles_labels()):
      legend.setdefault(label, h)
  fig.legend(legend.values(), legend.keys(), loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


def _line_style(model: str) -> str:
  """An init control is drawn in its cell's colour with its own dash pattern."""
  variant = model.partition('+')[2]
  return {'': '-', 'chrono': '--', 'bias2': '-.'}.get(variant, ':')
