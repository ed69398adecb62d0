"""Long-range capability: every (task, T, model, seed) point trained by the one
training loop (seqlab.sweep.run), then held-out loss against the task's chance level.

The table, figure and claims read results.jsonl only (each row carries its training
curve's digest, seqlab.train.curve_digest); never training state. Per (model, task, T):
  loss / chance   mean over seeds with its 95% interval (seqlab.studies.stats.mean_ci:
                  between seeds and the eval-sampling error of each seed's loss)
  solved          the seeds whose held-out loss is below SOLVED_FRACTION x chance, with a
                  Clopper-Pearson interval
  steps to solve  the first step whose windowed training loss falls below that threshold,
                  over the seeds that solved: median (min-max)
A model "solves" a task at T when the interval of its mean loss / chance lies below
SOLVED_FRACTION; it is "at chance" when the interval lies inside CHANCE_BAND around 1
(two-sided). Models may be init controls of a cell ('lstm+chrono', 'gru+bias2':
seqlab.models.VARIANTS); the claims compare each cell with its controls.
"""
from __future__ import annotations

import math
import os
import sys
from collections import defaultdict

import numpy as np

from seqlab import models, sweep
from seqlab.infra import writer
from seqlab.studies import stats, study

NAME = 'long_range'
TITLE = 'Long-range capability'
CAPTIONS = {'long_range': 'Held-out loss / chance against T, one panel per task, each model '
                          'at its chosen lr (line: mean over seeds; band: its 95% interval, cut '
                          'at the panel\'s bottom edge where it reaches 0; dashed line: chance; '
                          'dotted: solved; ring: the longest T each model solves, its whole '
                          'interval below the solved line; init controls dashed in their '
                          'cell\'s colour).'}

SOLVED_FRACTION = 0.1   # solved: held-out loss < 10% of the chance level
CHANCE_BAND = 0.1       # at chance: loss / chance within 1 +- 0.1 (two-sided)
NEVER_LEFT = 0.9        # a run whose smoothed training loss stayed above 0.9 x chance never left it
LONG_T = 100            # the adding claim is about T >= 100 (Hochreiter & Schmidhuber 1997)


def _finite(x):
  return x is not None and math.isfinite(x)


def family(model: str) -> str:
  """The model as the claims name it: its cell and init variant, not its kernel
  ('lstm:fused+chrono' -> 'lstm+chrono', 'gru:fused' -> 'gru')."""
  base, fields = models.split_variant(model)
  variant = model.partition('+')[2]
  return models.split_name(base)[0] + (f'+{variant}' if variant else '')


def validate(config) -> None:
  sweep.validate(config)


def run(config, workdir: str) -> list[dict]:
  """Trains every point not yet in workdir/results.jsonl, then the table and figure."""
  sweep.run(config, workdir)
  return study.finish(sys.modules[__name__], workdir)


# ------------------------------------------------------------------------------ reading
def _curve(r: dict, point_dir: str) -> tuple[list[int], list[float]]:
  """(steps, training losses) of a row: its curve digest, else (a workdir from before
  the digest) its point's metrics.jsonl."""
  c = r.get('curve')
  if c:
    pts = [(s, l) for s, l in zip(c['step'], c['loss']) if _finite(l)]
  else:
    pts = [(int(m['step']), m['loss']) for m in writer.read_jsonl(
        os.path.join(point_dir, 'metrics.jsonl')) if 'loss' in m and _finite(m['loss'])]
  return [s for s, _ in pts], [l for _, l in pts]


def steps_to_solve(steps, losses, chance: float) -> int | None:
  """The first step whose (windowed) training loss is below SOLVED_FRACTION x chance."""
  for s, l in zip(steps, losses):
    if l < SOLVED_FRACTION * chance:
      return int(s)
  return None


def still_falling(losses) -> float | None:
  """1 - (mean training loss over the last tenth of the curve) / (over the tenth ending
  at 80%): how much the loss was still falling at the end (> 0.1: more steps would help)."""
  n = len(losses) // 10
  if n < 1:
    return None
  late = np.mean(losses[-n:])
  mid = np.mean(losses[int(0.8 * len(losses)) - n:int(0.8 * len(losses))])
  return float(1.0 - late / mid) if mid > 0 else None


def best_train_ratio(losses, chance: float) -> float | None:
  """The lowest training loss / chance over windows of a tenth of the curve (smoothed)."""
  if not losses:
    return None
  n = max(len(losses) // 10, 1)
  means = np.convolve(losses, np.ones(n) / n, mode='valid')
  return float(means.min() / chance)


def rows(workdir: str) -> list[dict]:
  """results.jsonl rows of the chosen lr of each scope (study.select_lr; every row when
  there is no lr sweep), with `solved`, `steps_to_solve`, `diverged`, `still_falling`
  and `best_train_ratio` added from each row's curve."""
  out = []
  for r in study.select_lr(writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))):
    r = dict(r)
    diverged = r.get('diverged_at_step') is not None or not _finite(r.get('final_loss'))
    r['diverged'] = diverged
    r['solved'] = (not diverged) and r['final_loss'] < SOLVED_FRACTION * r['chance_loss']
    steps, losses = _curve(r, os.path.join(workdir, r['point']))
    r['steps_to_solve'] = (steps_to_solve(steps, losses, r['chance_loss'])
                           if r['solved'] else None)
    r['still_falling'] = None if diverged else still_falling(losses)
    r['best_train_ratio'] = None if diverged else best_train_ratio(losses, r['chance_loss'])
    r.pop('curve', None)
    out.append(r)
  return out


def grouped(rows):
  """(task, seq_len) -> model -> list of rows over seeds."""
  g = defaultdict(lambda: defaultdict(list))
  for r in rows:
    g[(r['task'], r['seq_len'])][r['model']].append(r)
  return g


def ratio_ci(rs: list[dict]) -> stats.Interval:
  """Mean held-out loss / chance over the seeds of `rs` with its 95% interval (a diverged
  seed makes it not finite)."""
  if not rs:
    return stats.Interval(math.inf, math.inf, math.inf)
  chance = rs[0]['chance_loss']
  iv = stats.mean_ci([r.get('final_loss') for r in rs],
                     [r.get('final_loss_se') for r in rs],
                     examples=min((r.get('eval_examples') or 0) for r in rs),
                     bounds=(0.0, math.inf))
  return iv.scaled(1.0 / chance)


def solved_ci(rs: list[dict]) -> stats.Interval:
  return stats.proportion_ci(sum(bool(r.get('solved')) for r in rs), len(rs))


def steps_text(rs: list[dict]) -> str:
  steps = sorted(r['steps_to_solve'] for r in rs if r.get('steps_to_solve') is not None)
  if not steps:
    return '-'
  med = int(np.median(steps))
  return f'{med}' if len(steps) == 1 else f'{med} ({steps[0]}-{steps[-1]})'


def _of(rows, task, fam, t=None):
  """The rows of model family `fam` (kernel ignored) on task [at T]."""
  return [r for r in rows if r['task'] == task and family(r['model']) == fam
          and (t is None or r['seq_len'] == t)]


def table(rows: list[dict]) -> str:
  """One row per (task, T, model): held-out loss / chance with its 95% interval, the
  solved seeds with theirs, the steps to solve, the lr and what it was chosen on."""
  if not rows:
    return '(no results)'
  g = grouped(rows)
  lines = ['| task | T | model | loss / chance [95% CI] | solved [95% CI] | steps to solve, '
           'median (range) | lr |', '|---|---|---|---|---|---|---|']
  for (task, t) in sorted(g):
    for m, rs in g[(task, t)].items():
      div = [r['diverged_at_step'] for r in rs if r.get('diverged_at_step') is not None]
      ratio = ratio_ci(rs)
      loss = ratio.fmt() if not div else f'{len(div)} of {len(rs)} diverged (step ' + \
          ', '.join(map(str, sorted(div))) + ')'
      sv = solved_ci(rs)
      grid = rs[0].get('lr_grid') or []
      lr = f'{rs[0]["lr"]:g}' if 'lr' in rs[0] else '-'
      if len(grid) > 1:
        lr += f' of {"/".join(f"{x:g}" for x in grid)}'
      lines.append(f'| {task} | {t} | {m} | {loss} | {sum(r["solved"] for r in rs)}/{len(rs)} '
                   f'[{sv.lo:.2f}, {sv.hi:.2f}] | {steps_text(rs)} | {lr} |')
  on = sorted({r['lr_chosen_on'] for r in rows if r.get('lr_chosen_on')})
  lines.append(f'\nloss / chance: mean over seeds, 95% interval from the seeds and each seed\'s '
               f'{_examples(rows)} held-out examples; solved: loss < {SOLVED_FRACTION:g} x chance '
               f'(Clopper-Pearson interval of the solved fraction); steps to solve: the first '
               f'window of the training curve below that level, over the seeds that solved.' +
               (f' The lr of each model: the lowest {" or ".join(on)}.' if on else ''))
  return '\n'.join(lines)


def _examples(rows) -> str:
  n = sorted({r.get('eval_examples') for r in rows if r.get('eval_examples')})
  return '/'.join(f'{x:,}' for x in n) or 'the'


# ------------------------------------------------------------------------------ figure
def draw(workdir: str) -> list[str]:
  """The long-range figure from `workdir`'s results files."""
  from seqlab.studies.long_range_figure import figure
  rs = rows(workdir)
  return figure(rs, os.path.join(workdir, 'figures', 'long_range')) if rs else []


# --------------------------------------------------------------------------------- claims
def solves(rows, task: str, fam: str, t: int) -> stats.Part:
  """'fam solves task at T': the interval of its mean loss / chance below SOLVED_FRACTION;
  where it fails, the likely cause."""
  rs = _of(rows, task, fam, t)
  name = f'{fam} solves {task} at T={t}'
  if not rs:
    return stats.missing(name)
  part = stats.below(name, ratio_ci(rs), SOLVED_FRACTION)
  if part.outcome == stats.FAILS:
    part = stats.Part(part.name, part.outcome, part.estimate, part.rule,
                      cause(rows, task, fam, t))
  return part


def at_chance(rows, task: str, fam: str, t: int) -> stats.Part:
  """'fam at chance on task at T': the interval inside 1 +- CHANCE_BAND (two-sided)."""
  rs = _of(rows, task, fam, t)
  name = f'{fam} at chance on {task} at T={t}'
  if not rs:
    return stats.missing(name)
  iv = ratio_ci(rs)
  part = stats.within(name, iv, 1 - CHANCE_BAND, 1 + CHANCE_BAND)
  if part.outcome == stats.FAILS:
    note = ('it learned part of the task (below the band)' if iv.hi < 1 - CHANCE_BAND else
            'worse than the input-blind guess (above the band): it fits noise')
    part = stats.Part(part.name, part.outcome, part.estimate, part.rule, note)
  return part


def longest_solved(rows, task: str, fam: str, model: str | None = None) -> int | None:
  """The longest T at which `fam` (or the exact `model`) solves `task` (the part holds)."""
  ts = sorted({r['seq_len'] for r in rows if r['task'] == task})
  ok = []
  for t in ts:
    rs = [r for r in _of(rows, task, fam, t) if model is None or r['model'] == model]
    if rs and ratio_ci(rs).hi < SOLVED_FRACTION:
      ok.append(t)
  return max(ok) if ok else None


def cause(rows, task: str, fam: str, t: int) -> str:
  """The likely cause of `fam` not solving `task` at T, read off its chosen rows and the
  controls that were run: diverged seeds, seeds split between solved and not, an init
  control of the same cell that solves it (initialisation), the lr at the grid's edge, a
  loss that never left chance, one still falling (steps), else a plateau."""
  rs = _of(rows, task, fam, t)
  if not rs:
    return 'not run'
  div = sum(bool(r.get('diverged')) for r in rs)
  if div:
    return f'{div}/{len(rs)} seeds diverged (lr)'
  why = []
  k = sum(bool(r.get('solved')) for r in rs)
  if 0 < k < len(rs):
    why.append(f'{k}/{len(rs)} seeds solved it: the outcome depends on the seed')
  cell = fam.partition('+')[0]
  for other in dict.fromkeys(family(r['model']) for r in rows):
    if other != fam and other.partition('+')[0] == cell and other.partition('+')[2]:
      ors = _of(rows, task, other, t)
      if ors and ratio_ci(ors).hi < SOLVED_FRACTION:
        why.append(f'initialisation: {other} solves it ({ratio_ci(ors).fmt()})')
  lr = study.lr_cause(rs)
  if lr:
    why.append(lr)
  steps = rs[0].get('steps')
  best = [r['best_train_ratio'] for r in rs if r.get('best_train_ratio') is not None]
  falling = [r['still_falling'] for r in rs if r.get('still_falling') is not None]
  if best and min(best) > NEVER_LEFT:
    why.append(f'the training loss never left chance in {steps} steps')
  elif falling and max(falling) > 0.1:
    why.append(f'steps: the training loss still fell {100 * max(falling):.0f}% over the last '
               f'fifth of {steps} steps')
  return '; '.join(why) or (f'width or the model: the loss had flattened above the solved '
                            f'level at hidden {rs[0].get("hidden")} after {steps} steps')


def budget(rows, task) -> str:
  rs = [r for r in rows if r['task'] == task]
  grids = {tuple(r.get('lr_grid') or [r.get('lr')]) for r in rs}
  grid = ' or '.join('/'.join(f'{g:g}' for g in gr if g is not None) for gr in grids)
  on = sorted({r['lr_chosen_on'] for r in rs if r.get('lr_chosen_on')})
  seeds = sorted({r.get('seed') for r in rs})
  return (f'Budget: {"/".join(str(s) for s in sorted({r.get("steps") for r in rs} - {None}))} '
          f'steps, hidden {"/".join(str(h) for h in sorted({r.get("hidden") for r in rs} - {None}))}'
          f', {len(seeds)} seed(s) per point, lr {grid or "?"} '
          f'({"chosen on the " + " or ".join(on) if on else "fixed"}), '
          f'{_examples(rs)} held-out examples per seed.')


def _families(rows, task):
  return list(dict.fromkeys(family(r['model']) for r in rows if r['task'] == task))


def _ts(rows, task):
  return sorted({r['seq_len'] for r in rows if r['task'] == task})


def _difference(rows, task, worse: str, better: str, t: int) -> stats.Part:
  """'better has a lower loss than worse on task at T': (worse - better) loss / chance,
  its interval above 0."""
  a, b = _of(rows, task, worse, t), _of(rows, task, better, t)
  name = f'{better} below {worse} on {task} at T={t}'
  if not a or not b:
    return stats.missing(name)
  return stats.above(name, stats.difference(ratio_ci(a), ratio_ci(b)), 0.0,
                     rule=f'{worse} - {better} > 0',
                     fails_note=cause(rows, task, better, t) if ratio_ci(b).hi >= SOLVED_FRACTION
                     else '')


def claims(rows) -> list[study.Claim]:
  out = []
  if any(r['task'] == 'adding' for r in rows):
    long_ts = [t for t in _ts(rows, 'adding') if t >= LONG_T]
    ran = _families(rows, 'adding')
    if long_ts:
      parts = [solves(rows, 'adding', m, t) for m in ('lstm', 'gru') for t in long_ts]
      parts += [at_chance(rows, 'adding', 'rnn', t) for t in long_ts]
      if 'transformer' in ran:
        parts += [solves(rows, 'adding', 'transformer', t) for t in long_ts]
      attention = ', and so does attention,' if 'transformer' in ran else ''
      out.append(study.claim(
          f'Adding problem at T >= {LONG_T}: LSTM and GRU solve it{attention} while a '
          f'vanilla RNN stays at the 1/6 chance level (Hochreiter & Schmidhuber 1997; Bai '
          f'et al. 2018).', parts,
          f'Held-out MSE / chance; solved: < {SOLVED_FRACTION:g}; at chance: within '
          f'1 +- {CHANCE_BAND:g}. ' + budget(rows, 'adding')))
  if any(r['task'] == 'copy' for r in rows):
    longest = max(_ts(rows, 'copy'))
    out.append(study.claim(
        f'Copy memory at the longest T ({longest}): RNN, LSTM and GRU sit at the memoryless '
        f'baseline 10 ln 8/(T+20) within the step budget (Bai et al. 2018, Table 1).',
        [at_chance(rows, 'copy', m, longest) for m in ('rnn', 'lstm', 'gru')],
        f'Held-out loss / baseline, at the baseline: within 1 +- {CHANCE_BAND:g} (two-sided). '
        + budget(rows, 'copy')))
  if any(r['task'] == 'recall' for r in rows):
    ran = _families(rows, 'recall')
    ts = _ts(rows, 'recall')
    if 'rnn' in ran:
      parts = []
      for m in ('lstm', 'gru'):
        # m solves recall at some T where the rnn does not (Kleene logic over the Ts)
        per_t = [(t, solves(rows, 'recall', m, t), solves(rows, 'recall', 'rnn', t)) for t in ts]
        outcome = stats.any_of(stats.all_of([a.outcome, stats.negate(b.outcome)])
                               for _, a, b in per_t)
        est = '; '.join(f'T={t}: {m} {a.estimate}, rnn {b.estimate}' for t, a, b in per_t)
        note = ''
        if outcome == stats.FAILS:
          unsolved = [(t, a) for t, a, _ in per_t if a.outcome != stats.HOLDS]
          note = unsolved[-1][1].note if unsolved else 'the rnn solves every T the cell does'
        elif outcome == stats.UNDECIDED:
          note = '; '.join(p.note for _, a, b in per_t for p in (a, b)
                           if p.outcome == stats.UNDECIDED)
        parts.append(stats.Part(f'{m} solves recall at a T where the rnn does not', outcome,
                                est, f'loss / chance < {SOLVED_FRACTION:g} for {m}, not for '
                                f'the rnn', note))
      out.append(study.claim(
          'First-token recall: gated cells (LSTM, GRU) carry the first token to longer T '
          'than a vanilla RNN.', parts,
          'Held-out loss / chance (ln 8). ' + budget(rows, 'recall')))
    if 'transformer' in ran:
      out.append(study.claim(
          'First-token recall: attention reads the first position directly (a path of '
          'length 1), so it solves recall at every T.',
          [solves(rows, 'recall', 'transformer', t) for t in ts],
          'Held-out loss / chance (ln 8). ' + budget(rows, 'recall')))
  out += control_claims(rows)
  return out


def control_claims(rows) -> list[study.Claim]:
  """The init controls: chrono initialisation (Tallec & Ollivier 2018) against the plain
  cell at the longest T of each task; the GRU with an update gate that starts shut
  against the plain GRU on recall at every T."""
  out = []
  fams = list(dict.fromkeys(family(r['model']) for r in rows))
  chrono = [c for c in ('lstm', 'gru') if c in fams and f'{c}+chrono' in fams]
  if chrono:
    parts = []
    for task in dict.fromkeys(r['task'] for r in rows):
      t = max(_ts(rows, task))
      parts += [_difference(rows, task, c, f'{c}+chrono', t) for c in chrono
                if _of(rows, task, c) and _of(rows, task, f'{c}+chrono')]
    out.append(study.claim(
        'Chrono initialisation (gate biases log U[1, T_max - 1]; Tallec & Ollivier 2018) '
        'gives the LSTM and GRU a lower held-out loss than their usual init at the longest T '
        'of each task.', parts,
        'Difference of held-out loss / chance (usual - chrono), 95% interval (Welch). '
        + ' '.join(f'{task}: {budget(rows, task)}'
                   for task in dict.fromkeys(r['task'] for r in rows))))
  if 'gru' in fams and any(r['task'] == 'recall' for r in rows):
    controls = [f for f in ('gru+bias2', 'gru+chrono') if f in fams
                and _of(rows, 'recall', f)]
    if controls:
      parts = [_difference(rows, 'recall', 'gru', c, t) for c in controls
               for t in _ts(rows, 'recall')]
      out.append(study.claim(
          'The GRU\'s failure on first-token recall is its initialisation: with its update '
          'gate started shut (bias +2, z ~ 0.88; or chrono) its held-out loss is lower than '
          'with the usual zero bias (z ~ 1/2) at every T run.', parts,
          'Difference of held-out loss / chance (gru - control), 95% interval (Welch). '
          + budget(rows, 'recall')))
  return out
