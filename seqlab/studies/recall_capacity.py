"""Associative-recall capacity: MQAR (seqlab.data.mqar; Arora et al. 2023, "Zoology") with
the number of key-value pairs P and the model width D as axes, every model at its own best
learning rate from a stated grid, all trained by the one training loop (seqlab.train).

A point is (model, P, D, lr, T, seed); its results.jsonl line is the training result plus
those axes and `state_bytes`, the memory a model carries from one token to the next for one
example (float32), the quantity recall has to fit in:
  rnn, gru, mingru   H floats per layer
  lstm               2H (h and c)
  lru                N complex = 2N floats (N = H here)
  transformer        its KV cache at the sequence length: 2 T D per layer
For each (model, P, D, seed) the lr with the lowest VALID loss is kept (Zoology sweeps the
lr per model the same way; never chosen on the EVAL numbers reported); the table, heat maps
and claims read those points, each accuracy with its 95% interval.

Accuracy is over query positions only. A model that binds nothing but copies a value it
has seen gets 1/P (the in-context guess), so *recall* is accuracy above that guess,
normalised: (acc - 1/P) / (1 - 1/P), 0 for guessing, 1 for perfect recall.
"""
from __future__ import annotations

import copy
import itertools
import math
import os
import sys
from collections import defaultdict

import numpy as np

from seqlab import jobs, sweep
from seqlab.data import tasks
from seqlab.infra import writer
from seqlab.studies import plot_style, stats, study

NAME = 'recall_capacity'
TITLE = 'Associative-recall capacity (MQAR)'
CAPTIONS = {
    'recall_capacity': 'MQAR held-out accuracy at each model\'s best learning rate, one heat '
                       'map per model: number of key-value pairs against width.',
    'recall_by_state': 'MQAR accuracy against the state size in bytes per example (KV cache '
                       'for attention), one panel per number of pairs: read off where each '
                       'recurrent line reaches attention\'s accuracy.'}

SOLVED_ACCURACY = 0.9    # solved: held-out query accuracy >= 0.9
MATCH_TOLERANCE = 0.05   # a model matches attention within 0.05 of attention's best accuracy
ATTENTION_LEARNED = 0.5  # a state size is read off only where attention's recall >= 0.5
FALLS_BY = 0.1           # recall at the most pairs at least 0.1 below recall at the fewest
FLOAT_BYTES = 4
STATE_FLOATS_PER_WIDTH = {'rnn': 1, 'gru': 1, 'mingru': 1, 'lstm': 2, 'lru': 2}


def state_bytes(model: str, hidden: int, layers: int, seq_len: int) -> int:
  """Bytes one example carries between tokens (float32): the recurrent state, or the
  transformer's KV cache at seq_len (2 T D per layer)."""
  name = model.split(':')[0]
  if name == 'transformer':
    return 2 * seq_len * hidden * layers * FLOAT_BYTES
  return STATE_FLOATS_PER_WIDTH[name] * hidden * layers * FLOAT_BYTES


# ------------------------------------------------------------------------------ points
def points(config) -> list[dict]:
  rc, sw = config.recall, config.sweep
  return [dict(model=m, task='mqar', seq_len=int(t), seed=int(s), num_pairs=int(p),
               hidden=int(d), lr=float(lr))
          for t, p, d, m, lr, s in itertools.product(sw.seq_lens, rc.num_pairs, rc.widths,
                                                     sw.models, rc.lrs, sw.seeds)]


def point_name(p: dict) -> str:
  return (f'{p["model"]}-P{p["num_pairs"]}-D{p["hidden"]}-lr{p["lr"]:g}-T{p["seq_len"]}'
          f'-s{p["seed"]}')


def point_config(config, p: dict):
  """sweep.point_config plus this study's axes: the pairs, the width and the lr."""
  c = sweep.point_config(config, p, hidden=p['hidden'])
  with c.unlocked():
    c.task.num_pairs = p['num_pairs']
    c.train.lr = p['lr']
  return c


def validate(config) -> None:
  rc = config.recall
  c = copy.deepcopy(config)          # the sweep's own checks, at the fewest pairs swept
  with c.unlocked():
    c.task.num_pairs = int(min(rc.num_pairs)) if list(rc.num_pairs) else c.task.num_pairs
  sweep.validate(c)
  if list(config.sweep.tasks) != ['mqar']:
    raise sweep.ConfigError(f'recall_capacity sweeps only the mqar task; got '
                            f'--tasks={",".join(config.sweep.tasks)}')
  for axis in ('num_pairs', 'widths', 'lrs'):
    if not list(rc[axis]):
      raise sweep.ConfigError(f'recall.{axis} is empty; give at least one value')
  if any(int(p) != p or p < 1 for p in rc.num_pairs):
    raise sweep.ConfigError(f'recall.num_pairs={list(rc.num_pairs)} must be integers >= 1')
  if any(int(d) != d or d < 1 for d in rc.widths):
    raise sweep.ConfigError(f'recall.widths={list(rc.widths)} must be integers >= 1')
  if any(not lr > 0 for lr in rc.lrs):
    raise sweep.ConfigError(f'recall.lrs={list(rc.lrs)} must be > 0')
  heads = config.model.heads
  if 'transformer' in [m.split(':')[0] for m in config.sweep.models]:
    bad = [d for d in rc.widths if d % heads]
    if bad:
      raise sweep.ConfigError(f'recall.widths {bad} are not divisible by model.heads={heads}')
  for p in rc.num_pairs:
    c = copy.deepcopy(config)
    with c.unlocked():
      c.task.num_pairs = int(p)
    try:
      task = tasks.build(c.task)
    except ValueError as e:
      raise sweep.ConfigError(str(e)) from None
    for t in config.sweep.seq_lens:
      if int(t) < task.min_seq_len:
        raise sweep.ConfigError(f'seq_len={t} is too short for {p} key-value pairs: MQAR '
                                f'needs T >= 4P = {task.min_seq_len}')


def run(config, workdir: str) -> list[dict]:
  """Trains every (T, P, D, model, lr, seed) not yet in results.jsonl, then the table,
  figures and claims."""
  validate(config)
  jobs.compile_cache(workdir)
  done = sweep.finished(workdir)
  todo = [p for p in points(config) if point_name(p) not in done]
  print(f'recall_capacity: {len(todo)} of {len(points(config))} points to train', flush=True)
  count = iter(range(1, len(todo) + 1))

  def on_result(p, result):
    name = point_name(p)
    row = {'point': name, **result, **p,
           'state_bytes': state_bytes(p['model'], p['hidden'], int(config.model.layers),
                                      p['seq_len']),
           'layers': int(config.model.layers)}
    if writer.is_writer():
      writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), row)
    acc = row['final_accuracy']
    print(f'[{next(count)}/{len(todo)}] {name}: accuracy '
          f'{"diverged" if acc is None else f"{acc:.3f}"} ({result["wall_s"]:.1f}s)', flush=True)

  jobs.run(config.get('jobs', 1), jobs.train_quiet,
           [(p, (point_config(config, p), os.path.join(workdir, point_name(p))),
             os.path.join(workdir, point_name(p))) for p in todo], on_result)
  return study.finish(sys.modules[__name__], workdir)


# ---------------------------------------------------------------------------- reading
def rows(workdir: str) -> list[dict]:
  """Every point's line, with `best_lr` True on the lowest-VALID-loss lr of its
  (model, P, D, T, seed) group."""
  rs = [dict(r) for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))]
  return mark_best_lr(rs)


def mark_best_lr(rs: list[dict]) -> list[dict]:
  """The lr of each (model, P, D, T, seed) is chosen on its VALID loss, never on the EVAL
  accuracy or loss that the table and claims report (Zoology sweeps the lr per model)."""
  groups = defaultdict(list)
  for r in rs:
    groups[(r['model'], r['num_pairs'], r['hidden'], r['seq_len'], r['seed'])].append(r)
  for g in groups.values():
    finite = [r for r in g if r.get('valid_loss') is not None and math.isfinite(r['valid_loss'])
              and r.get('valid_split', 'valid') == 'valid']
    best = min(finite, key=lambda r: (r['valid_loss'], r['lr'])) if finite else None
    for r in g:
      r['best_lr'] = r is best
  return rs


def best(rows) -> dict:
  """(model, P, D) -> {'accuracy': Interval of the mean over seeds at the best lr (95%:
  seeds and each seed's held-out examples), 'lrs': [chosen lr per seed], 'state_bytes':
  ..., 'diverged_seeds': seeds whose every lr diverged (left out of the mean)}; a cell
  whose every lr diverged has accuracy None."""
  cells = defaultdict(list)
  for r in rows:
    cells[(r['model'], r['num_pairs'], r['hidden'])].append(r)
  out = {}
  for key, rs in cells.items():
    chosen = [r for r in rs if r.get('best_lr') and r.get('final_accuracy') is not None]
    out[key] = {'accuracy': stats.mean_ci(
                    [r['final_accuracy'] for r in chosen],
                    [r.get('final_accuracy_se') for r in chosen],
                    examples=min((r.get('eval_examples') or 0) for r in chosen),
                    bounds=(0.0, 1.0))
                if chosen else None,
                'lrs': sorted({r['lr'] for r in chosen}), 'state_bytes': rs[0]['state_bytes'],
                'diverged_seeds': len({r['seed'] for r in rs} - {r['seed'] for r in chosen})}
  return out


def _acc(cell) -> float | None:
  """The mean accuracy of a cell of best(), or None."""
  return None if not cell or cell.get('accuracy') is None else cell['accuracy'].value


def recall(acc: float, pairs: int) -> float:
  """Accuracy above the 1/P in-context guess, normalised to [.., 1]."""
  guess = 1.0 / pairs
  return (acc - guess) / (1.0 - guess) if pairs > 1 else acc


def recall_ci(acc: stats.Interval, pairs: int) -> stats.Interval:
  """recall() of an accuracy Interval (a linear map: the interval maps with it)."""
  if pairs <= 1:
    return acc
  guess = 1.0 / pairs
  shifted = stats.Interval(acc.value - guess, acc.lo - guess, acc.hi - guess, n=acc.n,
                           se=acc.se, df=acc.df, se_seeds=acc.se_seeds, se_eval=acc.se_eval,
                           examples=acc.examples)
  return shifted.scaled(1.0 / (1.0 - guess))


def _axes(rows):
  models = list(dict.fromkeys(r['model'] for r in rows))
  pairs = sorted({r['num_pairs'] for r in rows})
  widths = sorted({r['hidden'] for r in rows})
  return models, pairs, widths


def _bytes(n: int) -> str:
  for scale, unit in ((2 ** 20, 'MiB'), (2 ** 10, 'KiB')):
    if n >= scale:
      return f'{n / scale:g} {unit}'
  return f'{n} B'


def table(rows) -> str:
  """Rows (model, width) with the state size; columns the number of pairs: accuracy at
  the best lr (that lr in brackets)."""
  if not rows:
    return '(no results)'
  models, pairs, widths = _axes(rows)
  b = best(rows)
  t = sorted({r['seq_len'] for r in rows})
  lines = ['| model | width | state / example | ' + ' | '.join(f'P={p}' for p in pairs) + ' |',
           '|' + '---|' * (3 + len(pairs))]
  for m in models:
    for d in widths:
      cells = []
      size = None
      for p in pairs:
        cell = b.get((m, p, d))
        if cell is None:
          cells.append('')
          continue
        size = cell['state_bytes']
        lrs = '/'.join(f'{lr:g}' for lr in cell['lrs'])
        cells.append('diverged' if cell['accuracy'] is None else
                     f'{cell["accuracy"].fmt(".3f")} (lr {lrs})')
      lines.append(f'| {m} | {d} | {_bytes(size) if size else ""} | ' + ' | '.join(cells) + ' |')
  lines.append('| in-context guess 1/P | | | ' + ' | '.join(f'{1 / p:.3f}' for p in pairs) + ' |')
  seeds = len({r['seed'] for r in rows})
  lines += ['', f'Held-out accuracy at query positions, T={"/".join(map(str, t))}: '
                f'{"mean over " + str(seeds) + " seeds" if seeds > 1 else "one seed"} with its '
                f'95% interval ({"seeds and " if seeds > 1 else ""}the held-out examples), each '
                f'cell at its best lr of {sorted({r["lr"] for r in rows})} by VALID loss. '
                f'State: float32 recurrent state, or the KV cache at T for attention.']
  return '\n'.join(lines)


# ----------------------------------------------------------------------------- figures
def figures(rows, out_dir: str) -> list[str]:
  import matplotlib.pyplot as plt
  plot_style.apply()
  models, pairs, widths = _axes(rows)
  b = best(rows)
  # (1) heat maps: pairs x width per model
  fig, axes = plt.subplots(1, len(models), figsize=(1.2 + 1.9 * len(models), 2.4),
                           squeeze=False)
  for ax, m in zip(axes[0], models):
    grid = np.full((len(pairs), len(widths)), np.nan)
    for i, p in enumerate(pairs):
      for j, d in enumerate(widths):
        cell = b.get((m, p, d))
        if cell and cell['accuracy'] is not None:
          grid[i, j] = cell['accuracy'].value
    im = ax.imshow(grid, vmin=0.0, vmax=1.0, cmap='viridis', origin='lower', aspect='auto')
    for i in range(len(pairs)):
      for j in range(len(widths)):
        txt = '—' if np.isnan(grid[i, j]) else f'{grid[i, j]:.2f}'
        ax.text(j, i, txt, ha='center', va='center', fontsize=7,
                color='k' if not np.isnan(grid[i, j]) and grid[i, j] > 0.6 else 'w')
    ax.set_xticks(range(len(widths)), [str(d) for d in widths])
    # chance is the in-context guess 1/P: stated on each row of the map
    ax.set_yticks(range(len(pairs)), [f'{p} (1/P={1 / p:.2f})' for p in pairs])
    ax.grid(False)
    ax.set_title(m)
    ax.set_xlabel('width D')
  axes[0][0].set_ylabel('key-value pairs P')
  fig.colorbar(im, ax=list(axes[0]), label='accuracy', shrink=0.9)
  paths = plot_style.save(fig, os.path.join(out_dir, 'recall_capacity'))
  # (2) accuracy against state bytes, one panel per P
  fig, axes = plt.subplots(1, len(pairs), figsize=(max(3.4, 2.4 * len(pairs)), 2.5),
                           squeeze=False)
  for ax, p in zip(axes[0], pairs):
    for m in models:
      pts = sorted((b[(m, p, d)]['state_bytes'], b[(m, p, d)]['accuracy'].value)
                   for d in widths if (m, p, d) in b and b[(m, p, d)]['accuracy'] is not None)
      if pts:
        ax.plot(*zip(*pts), color=plot_style.color(m), marker=plot_style.marker(m), label=m)
    ax.axhline(1.0 / p, color='k', lw=0.6, ls=':', label='guess 1/P')
    ax.set_xscale('log', base=2)
    ticks = sorted({b[k]['state_bytes'] for k in b if k[1] == p})
    ax.set_xticks(ticks, [_bytes(v).replace(' ', '\n') for v in ticks])
    ax.minorticks_off()
    ax.set_ylim(0, 1.02)
    ax.set_title(f'P={p} pairs')
    ax.set_xlabel('state bytes / example')
  axes[0][0].set_ylabel('accuracy')
  handles = {}
  for ax in axes[0]:
    for h, lab in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(lab, h)
  fig.legend(list(handles.values()), list(handles), loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return paths + plot_style.save(fig, os.path.join(out_dir, 'recall_by_state'))


def draw(workdir: str) -> list[str]:
  rs = rows(workdir)
  return figures(rs, os.path.join(workdir, 'figures')) if rs else []


# ------------------------------------------------------------------------------ claims
def matching_state(rows) -> dict:
  """(recurrent model, P) -> the smallest state bytes whose accuracy is within
  MATCH_TOLERANCE of attention's best accuracy at P, or None; attention's best per P."""
  models, pairs, widths = _axes(rows)
  b = best(rows)
  att = {p: max((b[(m, p, d)]['accuracy'].value for m in models for d in widths
                 if m.split(':')[0] == 'transformer' and (m, p, d) in b
                 and b[(m, p, d)]['accuracy'] is not None), default=None) for p in pairs}
  out = {}
  for m in models:
    if m.split(':')[0] == 'transformer':
      continue
    for p in pairs:
      if att[p] is None or recall(att[p], p) < ATTENTION_LEARNED:
        continue                     # attention did not learn it: nothing to match
      ok = sorted(b[(m, p, d)]['state_bytes'] for d in widths if (m, p, d) in b
                  and b[(m, p, d)]['accuracy'] is not None
                  and b[(m, p, d)]['accuracy'].value >= att[p] - MATCH_TOLERANCE)
      out[(m, p)] = ok[0] if ok else None
  return {'attention': att, 'match': out}


def claims(rows) -> list[study.Claim]:
  if not rows:
    return []
  models, pairs, widths = _axes(rows)
  b = best(rows)
  out = []
  att = [m for m in models if m.split(':')[0] == 'transformer']
  rec = [m for m in models if m not in att]
  parts = []
  for m in att:
    for p in pairs:
      for d in widths:
        cell = b.get((m, p, d))
        name = f'{m} solves P={p}, D={d}'
        if not cell or cell['accuracy'] is None:
          parts.append(stats.missing(name, 'not run' if not cell else 'every lr diverged'))
        elif cell['diverged_seeds']:   # a seed whose every lr diverged is not solved
          parts.append(stats.missing(name, f'{cell["diverged_seeds"]} seed(s) diverged'))
        else:
          parts.append(stats.above(name, cell['accuracy'], SOLVED_ACCURACY))
  if len(pairs) > 1:
    lo, hi = pairs[0], pairs[-1]
    for m in rec:
      for d in widths:
        name = f'{m}\'s recall falls from P={lo} to P={hi} at D={d}'
        c_lo, c_hi = b.get((m, lo, d)), b.get((m, hi, d))
        if not c_lo or not c_hi or c_lo['accuracy'] is None or c_hi['accuracy'] is None:
          parts.append(stats.missing(name))
          continue
        drop = stats.difference(recall_ci(c_lo['accuracy'], lo), recall_ci(c_hi['accuracy'], hi))
        parts.append(stats.above(name, drop, FALLS_BY, rule=f'recall(P={lo}) - recall(P={hi}) '
                                 f'> {FALLS_BY:g}'))
  elif rec:
    parts.append(stats.missing('recall measured at two numbers of pairs or more'))
  # both halves of the claim are stated: one with nothing run does not hold
  if not att:
    parts.append(stats.missing('an attention model was run'))
  if not rec:
    parts.append(stats.missing('a recurrent model was run'))
  seeds = len({r['seed'] for r in rows})
  out.append(study.claim(
      'Attention solves MQAR at every number of pairs and width, while each recurrent '
      'model\'s recall is lower at the most pairs than at the fewest, at every width (a fixed '
      'state size; Arora et al. 2023, Fig. 2).', parts,
      f'Solved: accuracy >= {SOLVED_ACCURACY:g}; recall = (acc - 1/P) / (1 - 1/P) (0: the '
      f'in-context guess), falls: by more than {FALLS_BY:g}. Accuracy at each cell\'s best lr '
      f'(chosen on VALID), {seeds} seed(s), 95% intervals.'))
  if att and rec:
    ms = matching_state(rows)
    words = [f'none for P={p}: attention did not learn it (recall '
             f'{_fmt(None if a is None else recall(a, p))} < {ATTENTION_LEARNED:g})'
             for p, a in ms['attention'].items()
             if a is None or recall(a, p) < ATTENTION_LEARNED]
    for m in rec:
      found = ', '.join(f'P={p} ' + ('not within the widths tried'
                                     if ms['match'].get((m, p)) is None
                                     else _bytes(ms['match'][(m, p)]))
                        for p in pairs if (m, p) in ms['match'])
      if found:
        words.append(f'{m}: {found}')
    kv = {p: min((b[(m, p, d)]['state_bytes'] for m in att for d in widths
                  if (m, p, d) in b), default=None) for p in pairs}
    out.append(study.measured(
        'The state size at which each recurrent model matches attention\'s MQAR accuracy '
        '(within ' f'{MATCH_TOLERANCE:g}), read off the accuracy-against-state-bytes figure.',
        'Attention\'s best mean accuracy: ' + ', '.join(
            f'P={p} {_fmt(a)}' for p, a in ms['attention'].items()) +
        ' (smallest KV cache ' + ', '.join(f'P={p} {_bytes(v)}' for p, v in kv.items() if v) +
        '). Smallest recurrent state within ' f'{MATCH_TOLERANCE:g} of it: ' +
        '; '.join(words) + '.'))
  return out


def _fmt(x) -> str:
  return '—' if x is None else f'{x:.2f}'


