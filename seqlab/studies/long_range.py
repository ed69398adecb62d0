"""Long-range capability: every (task, T, model, seed) point trained by the one
training loop (seqlab.sweep.run), then held-out loss against the task's chance level.

The table, figure and claims read results.jsonl (one line per point) and each point's
metrics.jsonl; never training state. A point is *solved* when its held-out loss is
below SOLVED_FRACTION x the task's chance loss; *steps to solve* is the first logged
training step whose loss falls below that threshold.
"""
from __future__ import annotations

import math
import os
import sys
from collections import defaultdict

import numpy as np

from seqlab import sweep
from seqlab.infra import writer
from seqlab.studies import plot_style, study

NAME = 'long_range'
TITLE = 'Long-range capability'
CAPTIONS = {'long_range': 'Held-out loss / chance against T, one panel per task (band: '
                          'min-max over seeds; dashed: chance; dotted: solved).'}

SOLVED_FRACTION = 0.1   # solved: held-out loss < 10% of the chance level


def _finite(x):
  return x is not None and math.isfinite(x)


def steps_to_solve(point_dir: str, chance: float) -> int | None:
  for row in writer.read_jsonl(os.path.join(point_dir, 'metrics.jsonl')):
    if 'loss' in row and _finite(row['loss']) and row['loss'] < SOLVED_FRACTION * chance:
      return int(row['step'])
  return None


def validate(config) -> None:
  sweep.validate(config)


def run(config, workdir: str) -> list[dict]:
  """Trains every point not yet in workdir/results.jsonl, then the table and figure."""
  sweep.run(config, workdir)
  return study.finish(sys.modules[__name__], workdir)


def rows(workdir: str) -> list[dict]:
  """results.jsonl rows with `solved`, `steps_to_solve` and `diverged` added."""
  rows = []
  for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl')):
    r = dict(r)
    diverged = r.get('diverged_at_step') is not None or not _finite(r.get('final_loss'))
    r['diverged'] = diverged
    r['solved'] = (not diverged) and r['final_loss'] < SOLVED_FRACTION * r['chance_loss']
    r['steps_to_solve'] = (steps_to_solve(os.path.join(workdir, r['point']), r['chance_loss'])
                           if r['solved'] else None)
    rows.append(r)
  return rows


def grouped(rows):
  """(task, seq_len) -> model -> list of rows over seeds."""
  g = defaultdict(lambda: defaultdict(list))
  for r in rows:
    g[(r['task'], r['seq_len'])][r['model']].append(r)
  return g


def table(rows: list[dict]) -> str:
  """Paper-style table: rows = (task, T), columns = models, held-out loss
  mean ± std over seeds, then solved/seeds and diverged seeds in brackets."""
  if not rows:
    return '(no results)'
  models = list(dict.fromkeys(r['model'] for r in rows))
  g = grouped(rows)
  head = '| task | T | chance | ' + ' | '.join(models) + ' |'
  lines = [head, '|' + '---|' * (3 + len(models))]
  for (task, t) in sorted(g, key=lambda k: (k[0], k[1])):
    cells = []
    chance = None
    for m in models:
      rs = g[(task, t)].get(m, [])
      if not rs:
        cells.append('')
        continue
      chance = rs[0]['chance_loss']
      losses = [r['final_loss'] for r in rs if _finite(r.get('final_loss'))]
      solved = sum(r['solved'] for r in rs)
      div = sum(r['diverged'] for r in rs)
      txt = (f'{np.mean(losses):.3g} ± {np.std(losses):.2g}' if losses else 'diverged')
      steps = [r['steps_to_solve'] for r in rs if r.get('steps_to_solve') is not None]
      txt += f' ({solved}/{len(rs)} solved'
      txt += f' in ~{int(np.median(steps))} steps' if steps else ''
      steps_div = sorted(r['diverged_at_step'] for r in rs
                         if r.get('diverged_at_step') is not None)
      txt += (f', {div} diverged' + (f' at step {", ".join(map(str, steps_div))}'
                                     if steps_div else '') + ')') if div else ')'
      cells.append(txt)
    lines.append(f'| {task} | {t} | {chance:.3g} | ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def figure(rows: list[dict], out_stem: str) -> list[str]:
  """Held-out loss / chance against T, one panel per task, one line per model,
  a band over seeds (min to max), the chance level at 1 and the solved threshold."""
  import matplotlib.pyplot as plt
  plot_style.apply()
  tasks_ = list(dict.fromkeys(r['task'] for r in rows))
  fig, axes = plt.subplots(1, len(tasks_), figsize=(max(3.4, 2.4 * len(tasks_)), 2.5),
                           squeeze=False)
  for ax, task in zip(axes[0], tasks_):
    by_model = defaultdict(lambda: defaultdict(list))
    for r in rows:
      if r['task'] == task and _finite(r.get('final_loss')):
        by_model[r['model']][r['seq_len']].append(r['final_loss'] / r['chance_loss'])
    for m, by_t in by_model.items():
      ts = sorted(by_t)
      vals = [np.array(by_t[t]) for t in ts]
      plot_style.band(ax, ts, [v.mean() for v in vals], [v.min() for v in vals],
                      [v.max() for v in vals], m)
    ax.axhline(1.0, color='k', lw=0.8, ls='--', label='chance')
    ax.axhline(SOLVED_FRACTION, color='k', lw=0.6, ls=':', label='solved')
    ax.set_xscale('log')
    ax.set_yscale('log')
    plot_style.log_ticks(ax, [r['seq_len'] for r in rows if r['task'] == task])
    ax.set_title(task)
    ax.set_xlabel('sequence length T')
  axes[0][0].set_ylabel('held-out loss / chance')
  handles, labels = axes[0][-1].get_legend_handles_labels()
  fig.legend(handles, labels, loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


def draw(workdir: str) -> list[str]:
  """The long-range figure from `workdir`'s results files."""
  rs = rows(workdir)
  return figure(rs, os.path.join(workdir, 'figures', 'long_range')) if rs else []


# --------------------------------------------------------------------------------- claims
def _ratio_by(rows, task, model):
  """seq_len -> mean held-out loss / chance over seeds (finite runs only)."""
  out = defaultdict(list)
  for r in rows:
    if r['task'] == task and r['model'] == model and r.get('final_loss') is not None:
      out[r['seq_len']].append(r['final_loss'] / r['chance_loss'])
  return {t: float(np.mean(v)) for t, v in sorted(out.items())}


def _fmt_ratios(d):
  return ', '.join(f'T={t}: {v:.3g}' for t, v in d.items()) or 'no runs'


AT_CHANCE = 0.5   # a model "stays near chance" while its loss is above half the chance level


def claims(rows) -> list[study.Claim]:
  out = []
  if any(r['task'] == 'adding' for r in rows):
    rnn = _ratio_by(rows, 'adding', 'rnn')
    ran = {r['model'] for r in rows if r['task'] == 'adding'}
    others = {m: _ratio_by(rows, 'adding', m) for m in ('lstm', 'gru', 'transformer') if m in ran}
    parts = {'the rnn stays near chance at every T': bool(rnn) and all(
        v > AT_CHANCE for v in rnn.values())}
    for m, by_t in others.items():   # a model that only diverged has no ratios: not solved
      parts[f'{m} solves it at every T'] = bool(by_t) and all(
          v < SOLVED_FRACTION for v in by_t.values())
    out.append(study.claim(
        'Adding problem: a vanilla RNN stays near the 1/6 chance level as T grows, while '
        'gated cells and attention solve it.', parts,
        f'Held-out MSE / chance: rnn {_fmt_ratios(rnn)}; ' +
        '; '.join(f'{m} {_fmt_ratios(v)}' for m, v in others.items()) +
        f' (solved: < {SOLVED_FRACTION:g} x chance).'))
  if any(r['task'] == 'copy' for r in rows):
    longest = max(r['seq_len'] for r in rows if r['task'] == 'copy')
    rec = {m: _ratio_by(rows, 'copy', m).get(longest) for m in ('rnn', 'lstm', 'gru')}
    rec = {m: v for m, v in rec.items() if v is not None}
    out.append(study.claim(
        f'Copy memory at the longest T ({longest}): RNN, LSTM and GRU sit at the memoryless '
        'baseline 10 ln 8/(T+20) within the step budget (Bai et al. 2018, Table 1).',
        {f'{m} at the baseline': v > AT_CHANCE for m, v in rec.items()},
        f'Held-out loss / baseline at T={longest}: ' +
        ', '.join(f'{m} {v:.3g}' for m, v in rec.items()) + '.'))
  if any(r['task'] == 'recall' for r in rows):
    longest = max(r['seq_len'] for r in rows if r['task'] == 'recall')
    ratios = {m: _ratio_by(rows, 'recall', m) for m in
              dict.fromkeys(r['model'] for r in rows if r['task'] == 'recall')}
    att = ratios.get('transformer', {}).get(longest)
    parts = {'attention solves it': att is not None and att < SOLVED_FRACTION}
    for m in ('rnn', 'lstm', 'gru'):
      v = ratios.get(m, {}).get(longest)
      if v is not None:
        parts[f'{m} stays near chance'] = v > AT_CHANCE
    out.append(study.claim(
        f'First-token recall at T={longest}: attention reads the first position directly '
        '(a path of length 1), while recurrent models must carry it through T steps.', parts,
        'Held-out loss / chance (ln 8): ' +
        ', '.join(f'{m} {v[longest]:.3g}' for m, v in ratios.items() if longest in v) + '.'))
  return out
