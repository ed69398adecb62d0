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
                          'min-max over seeds; dashed: chance; dotted: solved; ring: the '
                          'longest T each model solves; each model at its best lr).'}

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
  """results.jsonl rows of the chosen lr of each (model, task, T) (study.select_lr; every
  row when there is no lr sweep), with `solved`, `steps_to_solve`, `diverged`,
  `still_falling` (the training loss's fall over the last fifth of training) and
  `best_train_ratio` (its lowest smoothed value / chance) added."""
  rows = []
  for r in study.select_lr(writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))):
    r = dict(r)
    diverged = r.get('diverged_at_step') is not None or not _finite(r.get('final_loss'))
    r['diverged'] = diverged
    r['solved'] = (not diverged) and r['final_loss'] < SOLVED_FRACTION * r['chance_loss']
    point = os.path.join(workdir, r['point'])
    r['steps_to_solve'] = steps_to_solve(point, r['chance_loss']) if r['solved'] else None
    r['still_falling'] = None if diverged else still_falling(point)
    r['best_train_ratio'] = None if diverged else best_train_ratio(point, r['chance_loss'])
    rows.append(r)
  return rows


def still_falling(point_dir: str) -> float | None:
  """1 - (mean training loss over the last tenth of steps) / (over the tenth ending at
  80%): how much the loss was still falling at the end (> 0.1: more steps would help)."""
  losses = _train_losses(point_dir)
  n = len(losses) // 10
  if n < 1:
    return None
  late, mid = np.mean(losses[-n:]), np.mean(losses[int(0.8 * len(losses)) - n:
                                                   int(0.8 * len(losses))])
  return float(1.0 - late / mid) if mid > 0 else None


def best_train_ratio(point_dir: str, chance: float) -> float | None:
  """The lowest training loss / chance over windows of a tenth of the run (smoothed)."""
  losses = _train_losses(point_dir)
  n = max(len(losses) // 10, 1)
  if not losses:
    return None
  means = np.convolve(losses, np.ones(n) / n, mode='valid')
  return float(means.min() / chance)


def _train_losses(point_dir: str) -> list[float]:
  return [row['loss'] for row in writer.read_jsonl(os.path.join(point_dir, 'metrics.jsonl'))
          if 'loss' in row and _finite(row['loss'])]


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
      grid = rs[0].get('lr_grid') or []
      txt += f', lr {rs[0]["lr"]:g}' if len(grid) > 1 else ''
      txt += f' ({solved}/{len(rs)} solved'
      txt += f' in ~{int(np.median(steps))} steps' if steps else ''
      steps_div = sorted(r['diverged_at_step'] for r in rs
                         if r.get('diverged_at_step') is not None)
      txt += (f', {div} diverged' + (f' at step {", ".join(map(str, steps_div))}'
                                     if steps_div else '') + ')') if div else ')'
      cells.append(txt)
    lines.append(f'| {task} | {t} | {chance:.3g} | ' + ' | '.join(cells) + ' |')
  grids = sorted({tuple(r['lr_grid']) for r in rows if len(r.get('lr_grid') or []) > 1})
  if grids:
    lines.append('\nEach cell: the lr with the lowest validation loss (mean over seeds) of ' +
                 ' or '.join('/'.join(f'{g:g}' for g in grid) for grid in grids) +
                 '; held-out loss mean ± std over the seeds at that lr.')
  return '\n'.join(lines)


def figure(rows: list[dict], out_stem: str) -> list[str]:
  """Held-out loss / chance against T, one panel per task, one line per model,
  a band over seeds (min to max), the chance level at 1 and the solved threshold."""
  import matplotlib.pyplot as plt
  plot_style.apply()
  tasks_ = list(dict.fromkeys(r['task'] for r in rows))
  fig, axes = plt.subplots(1, len(tasks_), figsize=(max(3.4, 2.4 * len(tasks_)), 2.5),
                           squeeze=False)
  marked = False
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
      t_best = longest_solved(rows, task, m)
      if t_best is not None:   # the longest T this model still solves: a ring on its line
        ax.plot([t_best], [np.mean(by_t[t_best])], 'o', ms=11, mfc='none', mew=1.2,
                color=plot_style.color(m))
        marked = True
    ax.axhline(1.0, color='k', lw=0.8, ls='--', label='chance')
    ax.axhline(SOLVED_FRACTION, color='k', lw=0.6, ls=':', label='solved')
    ax.set_xscale('log')
    ax.set_yscale('log')
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
NEVER_LEFT = 0.9  # a run whose smoothed training loss stayed above 0.9 x chance never left it
LONG_T = 100      # the adding claim is about T >= 100 (Hochreiter & Schmidhuber 1997: T = 100-1000)


def longest_solved(rows, task: str, model: str) -> int | None:
  """The longest T at which `model` solves `task` (mean loss / chance over seeds below
  SOLVED_FRACTION), or None."""
  solved = [t for t, v in _ratio_by(rows, task, model).items() if v < SOLVED_FRACTION]
  return max(solved) if solved else None


def cause(rows, task: str, model: str, t: int) -> str:
  """The likely cause of `model` not solving `task` at T, from its chosen rows: diverged
  seeds, the lr at the grid's edge, a loss that never left chance, one still falling
  (steps), else a plateau (width or the model)."""
  rs = [r for r in rows if r['task'] == task and r['model'] == model and r['seq_len'] == t]
  if not rs:
    return 'not run'
  div = sum(bool(r.get('diverged')) for r in rs)
  if div:
    return f'{div}/{len(rs)} seeds diverged (lr)'
  why = [c for c in [study.lr_cause(rs)] if c]
  steps = rs[0].get('steps')
  best = [r['best_train_ratio'] for r in rs if r.get('best_train_ratio') is not None]
  falling = [r['still_falling'] for r in rs if r.get('still_falling') is not None]
  if best and min(best) > NEVER_LEFT:
    why.append(f'the training loss never left chance in {steps} steps (the signal did not '
               f'reach the model: steps, the gate init or width; one run cannot tell which)')
  elif falling and max(falling) > 0.1:
    why.append(f'steps: the training loss still fell {100 * max(falling):.0f}% over the last '
               f'fifth of {steps} steps')
  return '; '.join(why) or (f'width or the model: the loss had flattened above the solved '
                            f'level at hidden {rs[0].get("hidden")} after {steps} steps')


def _fails(rows, task, model, ts, solve: bool) -> dict[str, bool]:
  """Named parts '{model} solves/stays near chance at T=..' with the cause where it fails."""
  ratios = _ratio_by(rows, task, model)
  parts = {}
  for t in ts:
    v = ratios.get(t)
    ok = v is not None and (v < SOLVED_FRACTION if solve else v > AT_CHANCE)
    name = f'{model} {"solves it" if solve else "stays near chance"} at T={t}'
    if not ok and solve:
      name += f' ({cause(rows, task, model, t)})'
    parts[name] = ok
  return parts


def _budget(rows, task) -> str:
  rs = [r for r in rows if r['task'] == task]
  grids = {tuple(r.get('lr_grid') or [r.get('lr')]) for r in rs}
  grid = ' or '.join('/'.join(f'{g:g}' for g in gr if g is not None) for gr in grids)
  chosen = 'chosen on validation loss' if any(len(g) > 1 for g in grids) else 'fixed'
  return (f'Budget: {"/".join(str(s) for s in sorted({r.get("steps") for r in rs} - {None}))} '
          f'steps, hidden {"/".join(str(h) for h in sorted({r.get("hidden") for r in rs} - {None}))}, '
          f'{len({r.get("seed") for r in rs})} seed(s), lr {grid or "?"} ({chosen}).')


def claims(rows) -> list[study.Claim]:
  out = []
  models_of = lambda task: list(dict.fromkeys(r['model'] for r in rows if r['task'] == task))
  ts_of = lambda task: sorted({r['seq_len'] for r in rows if r['task'] == task})
  if any(r['task'] == 'adding' for r in rows):
    long_ts = [t for t in ts_of('adding') if t >= LONG_T]
    ran = models_of('adding')
    if long_ts:
      parts = {}
      for m in ('lstm', 'gru'):
        parts.update(_fails(rows, 'adding', m, long_ts, solve=True))
      parts.update(_fails(rows, 'adding', 'rnn', long_ts, solve=False))
      if 'transformer' in ran:
        parts.update(_fails(rows, 'adding', 'transformer', long_ts, solve=True))
      attention = ', and so does attention,' if 'transformer' in ran else ''
      out.append(study.claim(
          f'Adding problem at T >= {LONG_T}: LSTM and GRU solve it{attention} while a '
          'vanilla RNN stays near the 1/6 chance level (Hochreiter & Schmidhuber 1997; Bai '
          'et al. 2018).', parts,
          'Held-out MSE / chance: ' + '; '.join(
              f'{m} {_fmt_ratios(_ratio_by(rows, "adding", m))}' for m in ran) +
          f' (solved: < {SOLVED_FRACTION:g}; near chance: > {AT_CHANCE:g}). ' +
          _budget(rows, 'adding')))
  if any(r['task'] == 'copy' for r in rows):
    longest = max(ts_of('copy'))
    rec = {m: _ratio_by(rows, 'copy', m).get(longest) for m in ('rnn', 'lstm', 'gru')}
    rec = {m: v for m, v in rec.items() if v is not None}
    out.append(study.claim(
        f'Copy memory at the longest T ({longest}): RNN, LSTM and GRU sit at the memoryless '
        'baseline 10 ln 8/(T+20) within the step budget (Bai et al. 2018, Table 1).',
        {f'{m} at the baseline': v > AT_CHANCE for m, v in rec.items()},
        f'Held-out loss / baseline at T={longest}: ' +
        ', '.join(f'{m} {v:.3g}' for m, v in rec.items()) + '. ' + _budget(rows, 'copy')))
  if any(r['task'] == 'recall' for r in rows):
    ran = models_of('recall')
    reach = {m: longest_solved(rows, 'recall', m) for m in ran}
    reach_txt = ', '.join(f'{m} {"none" if v is None else f"T={v}"}' for m, v in reach.items())
    evidence = (f'Longest T solved: {reach_txt}. Held-out loss / chance (ln 8): ' +
                '; '.join(f'{m} {_fmt_ratios(_ratio_by(rows, "recall", m))}' for m in ran) +
                '. ' + _budget(rows, 'recall'))
    if 'rnn' in ran:
      parts = {}
      for m in ('lstm', 'gru'):
        if m in ran:
          ok = (reach[m] or 0) > (reach['rnn'] or 0)
          unsolved = [t for t in ts_of('recall') if t > (reach[m] or 0)]
          why = '' if ok or not unsolved else f' ({cause(rows, "recall", m, unsolved[0])})'
          parts[f'{m} solves a longer T than the rnn{why}'] = ok
      out.append(study.claim(
          'First-token recall: gated cells (LSTM, GRU) carry the first token to longer T '
          'than a vanilla RNN.', parts, evidence))
    if 'transformer' in ran:
      out.append(study.claim(
          'First-token recall: attention reads the first position directly (a path of '
          'length 1), so it solves recall at every T.',
          _fails(rows, 'recall', 'transformer', ts_of('recall'), solve=True), evidence))
  return out
