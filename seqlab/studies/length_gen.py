"""Length generalisation: every (task, model, seed) is trained once at T by the one
training loop (seqlab.train), then its held-out loss is measured, without retraining, at
every length m x T for m in config.length_gen.multipliers (T, 2T, 4T, 8T, 16T).

The recurrent models and the sinusoidal transformer are length-agnostic: the same
parameters run at any length. A transformer with learned positions has an embedding for
each of the max_len positions it was built with (train.model_config: the training length);
a longer input has no position to read, so its row records that reason instead of a
number (never a silently clipped table). In a sweep, 'transformer+learned' names the
transformer with positions='learned'.

One results.jsonl line per point: the training result and `evals`, one entry per length
with loss, accuracy and the task's chance loss at that length, or a `reason`. The table,
figure and claims read only those lines.

A model *learned* a task at T when its loss there is below LEARNED x chance; it *keeps*
its loss at a length L when r_L <= max(KEEP_FACTOR r_T, r_T + KEEP_MARGIN), r = loss/chance
(so a loss of 0.01 x chance that doubles to 0.02 is kept, one that rises to chance is not).
"""
from __future__ import annotations

import copy
import math
import os
import sys
import types
from collections import defaultdict

import numpy as np

from seqlab import jobs, models, sweep, train
from seqlab.data import tasks
from seqlab.infra import sharding, writer
from seqlab.studies import plot_style, stats, study

NAME = 'length_gen'
TITLE = 'Length generalisation: train at T, evaluate up to 16T'
CAPTIONS = {'length_gen': 'Held-out loss / chance against evaluation length, one panel per '
                          'task; trained at T (dotted vertical line), evaluated longer without '
                          'retraining (dashed: chance). transformer+learned has no positions '
                          'beyond T: one point.'}

LEARNED = 0.5       # learned at T: held-out loss below half the chance level
KEEP_FACTOR = 2.0   # kept at L: loss/chance at L <= max(KEEP_FACTOR x ratio at T,
KEEP_MARGIN = 0.1   #                                   ratio at T + KEEP_MARGIN)
RECURRENT = ('rnn', 'lstm', 'gru', 'lru', 'mingru')
# the reasons a length is not evaluated: the task's held-out data is too short (not the
# model's doing: left out of the claims), or a learned-positions transformer has no position
TASK_LIMIT, NO_POSITION, NOT_FINITE = ('held-out data has at most', 'no learned position beyond',
                                       'not finite')


def split_variant(model: str) -> tuple[str, dict]:
  """'transformer+learned' -> ('transformer', {'positions': 'learned'}); 'lstm' -> ('lstm', {})
  (seqlab.models.split_variant, its error as a ConfigError)."""
  try:
    return models.split_variant(model)
  except ValueError as e:
    raise sweep.ConfigError(str(e)) from None


# -------------------------------------------------------------------------------- running
def validate(config) -> None:
  bases = list(dict.fromkeys(split_variant(m)[0] for m in config.sweep.models))
  c = copy.deepcopy(config)
  with c.unlocked():
    c.sweep.models = bases
  sweep.validate(c)
  mults = list(config.length_gen.multipliers)
  if not mults or any(isinstance(m, bool) or int(m) != m or m < 1 for m in mults):
    raise sweep.ConfigError(f'length_gen.multipliers={mults} must be integers >= 1 (lengths '
                            f'm x T), e.g. [1, 2, 4, 8, 16]')
  if 1 not in mults:
    raise sweep.ConfigError(f'length_gen.multipliers={mults} must include 1 (the training '
                            f'length, the baseline every longer length is compared with)')


def unsupported(task, cfg, seq_len: int) -> str | None:
  """Why `seq_len` cannot be evaluated with this model and task, or None."""
  if task.max_seq_len and seq_len > task.max_seq_len:
    return f'{task.name} {TASK_LIMIT} {task.max_seq_len} tokens'
  if cfg.name == 'transformer' and cfg.positions == 'learned':
    needed = task.input_len(seq_len) + (1 if cfg.readout == 'last' and cfg.pool == 'cls' else 0)
    if needed > cfg.max_len:
      return (f'{NO_POSITION} {cfg.max_len} (built for the training length); '
              f'length {seq_len} needs {needed}')
  return None


def evaluate_lengths(config, graphdef, params) -> list[dict]:
  """Held-out loss of trained `params` at every multiplier x config.task.seq_len; one
  jitted eval step (retraced per length), the same held-out batches as train.evaluate."""
  import jax
  task = tasks.build(config.task)
  t = int(config.task.seq_len)
  cfg = train.model_config(config, task, t)
  compiled = types.SimpleNamespace(eval_step=jax.jit(train.make_eval_step(graphdef, task)),
                                   mesh=sharding.make_mesh(1))
  out = []
  for m in config.length_gen.multipliers:
    n = int(m) * t
    reason = unsupported(task, cfg, n)
    if reason:
      out.append({'multiplier': int(m), 'seq_len': n, 'reason': reason})
      continue
    ev = train.evaluate(compiled, params, task, config, n, int(config.seed))
    out.append({'multiplier': int(m), 'seq_len': n, 'loss': _finite_or_none(ev['loss']),
                'loss_se': _finite_or_none(ev['loss_se']), 'examples': ev['examples'],
                'accuracy': _finite_or_none(ev['accuracy']), 'chance': task.chance_loss(n)})
  return out


def _finite_or_none(x):
  return float(x) if x is not None and math.isfinite(x) else None


def train_and_evaluate(c, point_dir: str) -> dict:
  """One point: trained at its T, then evaluated at every length (evals)."""
  result, graphdef, params = train.train(c, point_dir, return_params=True)
  evals = [] if result['diverged_at_step'] is not None else evaluate_lengths(c, graphdef, params)
  return dict(result, evals=evals)


def run(config, workdir: str) -> list[dict]:
  """Trains every (task, T, model, seed) not yet in results.jsonl, evaluates it at every
  length, then the table, figure and claims."""
  validate(config)
  jobs.compile_cache(workdir)
  done = sweep.finished(workdir)
  todo = []
  for p in sweep.points(config):
    name = sweep.point_name(p)
    if name in done:
      print(f'[{name}] already finished; skipping')
      continue
    base, fields = split_variant(p['model'])
    c = sweep.point_config(config, dict(p, model=base), **fields)
    todo.append((p, (c, os.path.join(workdir, name)), os.path.join(workdir, name)))

  def on_result(p, result):
    row = sweep.record(workdir, p, result)
    print(f'[{row["point"]}] loss / chance by length: ' + ', '.join(
        f'{e["seq_len"]}: ' + (f'{_ratio(e):.3g}' if _ratio(e) is not None else 'n/a')
        for e in row['evals']), flush=True)

  jobs.run(config.get('jobs', 1), train_and_evaluate, todo, on_result)
  return study.finish(sys.modules[__name__], workdir)


# ---------------------------------------------------------------------------- reading
def rows(workdir: str) -> list[dict]:
  return writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))


def _ratio(e: dict) -> float | None:
  if e.get('loss') is None or not e.get('chance'):
    return None
  return e['loss'] / e['chance']


def ratios(rows) -> dict:
  """(task, model) -> multiplier -> the mean loss/chance over seeds as a stats.Interval
  (95%: between seeds and each seed's eval-sampling error), or the reason (str) the
  length was not evaluated. Diverged points (no evals) are left out."""
  vals = defaultdict(lambda: defaultdict(list))
  for r in rows:
    for e in r.get('evals') or []:
      v = _ratio(e)
      vals[(r['task'], r['model'])][e['multiplier']].append(
          (v, (e.get('loss_se') or 0.0) / e['chance'], e.get('examples') or 0)
          if v is not None else e.get('reason', NOT_FINITE))
  out = {}
  for key, by_m in vals.items():
    out[key] = {}
    for m, vs in sorted(by_m.items()):
      nums = [v for v in vs if not isinstance(v, str)]
      out[key][m] = (stats.mean_ci([v for v, _, _ in nums], [se for _, se, _ in nums],
                                   examples=min(n for _, _, n in nums), bounds=(0.0, math.inf))
                     if nums else vs[0])
  return out


def valid_at_t(rows) -> dict:
  """(task, model) -> the mean VALID loss / chance at the training length (what 'learned
  at T' is decided on: never the EVAL numbers the claims test)."""
  vals = defaultdict(list)
  for r in rows:
    if r.get('valid_loss') is not None and r.get('chance_loss'):
      vals[(r['task'], r['model'])].append(r['valid_loss'] / r['chance_loss'])
  return {k: float(np.mean(v)) for k, v in vals.items()}


def table(rows) -> str:
  """Rows (task, model); columns loss/chance at each evaluation length; '—' where a
  length cannot run, its reason in the notes under the table."""
  if not rows:
    return '(no results)'
  rs = ratios(rows)
  mults = sorted({m for by_m in rs.values() for m in by_m})
  t_of = {r['task']: r['seq_len'] for r in rows}
  head = '| task | model | ' + ' | '.join(_mult(m) for m in mults) + ' |'
  lines = [head, '|' + '---|' * (2 + len(mults))]
  notes = {}
  for (task, model), by_m in sorted(rs.items()):
    cells = []
    for m in mults:
      v = by_m.get(m)
      if isinstance(v, str):
        notes.setdefault((model, task), []).append((m, v))
        cells.append('—')
      else:
        cells.append('' if v is None else v.fmt())
    lines.append(f'| {task} (T={t_of[task]}) | {model} | ' + ' | '.join(cells) + ' |')
  seeds = sorted({len([r for r in rows if r['task'] == tk and r['model'] == mm])
                  for tk, mm in rs})
  over = (f'mean over {"/".join(map(str, seeds))} seeds, 95% interval from the seeds and '
          f'the held-out examples' if max(seeds) > 1 else
          'one seed, 95% interval from its held-out examples only (the seed-to-seed spread '
          'is not measured)')
  lines += ['', f'Held-out loss / chance ({over}), trained at T only.']
  for (model, task), missing in notes.items():
    where = ', '.join(f'{m}T' for m, _ in missing)
    lines.append(f'— {model} on {task} at {where}: {missing[0][1]}'
                 + (' (and longer).' if len(missing) > 1 else '.'))
  return '\n'.join(lines)


# ------------------------------------------------------------------------------ figure
def figure(rows, out_stem: str) -> list[str]:
  import matplotlib.pyplot as plt
  from matplotlib.ticker import NullFormatter
  plot_style.apply()
  rs = ratios(rows)
  task_names = list(dict.fromkeys(r['task'] for r in rows))
  t_of = {r['task']: r['seq_len'] for r in rows}
  fig, axes = plt.subplots(1, len(task_names), figsize=(max(3.4, 2.5 * len(task_names)), 2.6),
                           squeeze=False)
  for ax, task in zip(axes[0], task_names):
    for (tk, model), by_m in rs.items():
      if tk != task:
        continue
      pts = [(m * t_of[task], v.value) for m, v in by_m.items()
             if isinstance(v, stats.Interval) and math.isfinite(v.value) and v.value > 0]
      if not pts:
        continue
      base, fields = split_variant(model)
      ax.plot(*zip(*pts), color=plot_style.color(base), marker=plot_style.marker(base),
              ls='--' if fields else '-', mfc='none' if fields else None, label=model)
    ax.axhline(1.0, color='k', lw=0.8, ls='--')
    ax.axvline(t_of[task], color='k', lw=0.6, ls=':')
    ax.set_xscale('log')
    ax.set_yscale('log')
    plot_style.plain_log_labels(ax, 'y')
    ax.yaxis.set_minor_formatter(NullFormatter())   # label the decades only
    plot_style.log_ticks(ax, [m * t_of[task] for by_m in rs.values() for m in by_m])
    ax.set_title(f'{task} (trained at T={t_of[task]})')
    ax.set_xlabel('evaluation length')
  axes[0][0].set_ylabel('held-out loss / chance')
  handles, labels = {}, {}
  for ax in axes[0]:
    for h, lab in zip(*ax.get_legend_handles_labels()):
      handles.setdefault(lab, h)
  fig.legend(list(handles.values()), list(handles), loc='center left',
             bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


def draw(workdir: str) -> list[str]:
  rs = rows(workdir)
  return figure(rs, os.path.join(workdir, 'figures', 'length_gen')) if rs else []


# ------------------------------------------------------------------------------ claims
def _mult(m: int) -> str:
  return 'T' if m == 1 else f'{m}T'


def keep_threshold(at_t: float) -> float:
  """The largest loss/chance at a longer length that still counts as kept."""
  return max(KEEP_FACTOR * at_t, at_t + KEEP_MARGIN)


def _judged(by_m) -> dict:
  """multiplier -> Interval (not finite where the loss was not), or the reason the model
  could not run that length; lengths past the task's held-out data are left out."""
  return {m: stats.Interval(math.inf, math.inf, math.inf) if v == NOT_FINITE else v
          for m, v in by_m.items() if not (isinstance(v, str) and TASK_LIMIT in v)}


def _learned(rows, model) -> list[str]:
  """The tasks `model` learned at T: its VALID loss there below LEARNED x chance."""
  va = valid_at_t(rows)
  return [tk for (tk, mm), v in va.items() if mm == model and v < LEARNED]


def _keeps(model, task, judged) -> stats.Part:
  """'model keeps its loss on task': at every longer length the interval of loss/chance
  lies below keep_threshold(the loss/chance at T) (Kleene AND over the lengths)."""
  name = f'{model} keeps its loss on {task} at every length evaluated'
  at_t = judged.get(1)
  longer = {m: v for m, v in judged.items() if m > 1}
  if not isinstance(at_t, stats.Interval) or not longer:
    return stats.missing(name, 'not evaluated beyond T')
  thr = keep_threshold(at_t.value)
  per = {m: (stats.below(name, v, thr) if isinstance(v, stats.Interval)
             else stats.missing(name, v)) for m, v in longer.items()}
  outcome = stats.all_of(p.outcome for p in per.values())
  worst = max(per, key=lambda m: {stats.FAILS: 2, stats.UNDECIDED: 1}.get(per[m].outcome, 0))
  est = f'T {at_t.fmt()}; ' + ', '.join(f'{_mult(m)} {p.estimate}' for m, p in per.items())
  note = per[worst].note if outcome != stats.HOLDS else ''
  if outcome == stats.FAILS and not note:
    note = f'lost by {_mult(min(m for m, p in per.items() if p.outcome == stats.FAILS))}'
  return stats.Part(name, outcome, est, f'each < {thr:.3g} = max({KEEP_FACTOR:g} x, '
                    f'+{KEEP_MARGIN:g}) the ratio at T', note)


def claims(rows) -> list[study.Claim]:
  rs = ratios(rows)
  models = list(dict.fromkeys(r['model'] for r in rows))
  out = []
  recurrent = [m for m in models if split_variant(m)[0].split(':')[0] in RECURRENT]
  if recurrent:
    parts, unlearned = [], []
    for m in recurrent:
      learned = _learned(rows, m)
      parts += [_keeps(m, tk, _judged(rs[(tk, m)])) for tk in learned if (tk, m) in rs]
      others = sorted({r['task'] for r in rows if r['model'] == m} - set(learned))
      if others:
        unlearned.append(f'{m}: {", ".join(others)}')
    out.append(study.claim(
        'Recurrent models keep the held-out loss they reached at the training length T at '
        'every longer length evaluated (never trained on), on every task they learned at T.',
        parts,
        f'Held-out loss / chance, 95% interval. Learned at T: VALID loss below {LEARNED:g} x '
        f'chance (decided on VALID, tested on EVAL). ' +
        (f'Not learned at T, so not judged: {"; ".join(unlearned)}.' if unlearned else '')))
  sinus = [m for m in models if split_variant(m)[0].split(':')[0] == 'transformer'
           and split_variant(m)[1].get('positions') != 'learned']
  if sinus:
    parts = []
    for m in sinus:
      for tk in _learned(rows, m):
        judged = _judged(rs.get((tk, m), {}))
        longest = max((k for k, v in judged.items() if isinstance(v, stats.Interval)),
                      default=1)
        name = f'{m} (sinusoidal) degraded on {tk} at {_mult(longest)}'
        if longest == 1 or not isinstance(judged.get(1), stats.Interval):
          parts.append(stats.missing(name, 'not evaluated beyond T'))
          continue
        parts.append(stats.above(name, judged[longest], keep_threshold(judged[1].value),
                                 rule=f'> {keep_threshold(judged[1].value):.3g} (not kept)'))
    learned_pos = [m for m in models if split_variant(m)[1].get('positions') == 'learned']
    out.append(study.claim(
        'A transformer with sinusoidal positions, run longer than it was trained, has '
        'degraded (not kept its loss) by the longest length evaluated, on every task it '
        'learned at T.', parts,
        'Held-out loss / chance at the longest length, 95% interval, against the keep '
        'threshold.' + (f' {", ".join(learned_pos)}: no learned position exists beyond the '
                        f'training length, so those lengths are not run (a property of the '
                        f'embedding, not a measurement).' if learned_pos else '')))
  return out
