"""Real text and ListOps: the same models trained by the one training loop on a
character-level LM, text classification and LRA ListOps (offline by default; see
experiments/text.py), reported as bits/char against the unigram entropy (charlm) and
held-out accuracy against the majority class of the exact examples scored (textclf,
listops), each with its 95% interval.
"""
from __future__ import annotations

import math
import os
import sys

from seqlab import sweep
from seqlab.infra import writer
from seqlab.studies import stats, study

NAME = 'text'
TITLE = 'Real text and ListOps'
CAPTIONS: dict[str, str] = {}


def validate(config) -> None:
  sweep.validate(config)


def run(config, workdir: str) -> list[dict]:
  """Trains every point not yet in workdir/results.jsonl, then the table."""
  sweep.run(config, workdir)
  return study.finish(sys.modules[__name__], workdir)


def rows(workdir: str) -> list[dict]:
  return writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))


def _score(r) -> tuple[float | None, float | None, float | None, str]:
  """(held-out score, its standard error, its baseline, what they are) of one results row:
  bits/char against the training split's unigram entropy (charlm; lower is better), or
  accuracy against the majority class of the exact examples scored (higher is better)."""
  if r['task'] == 'charlm':
    to_bits = 1 / math.log(2)
    got = None if r.get('final_loss') is None else r['final_loss'] * to_bits
    se = None if r.get('final_loss_se') is None else r['final_loss_se'] * to_bits
    return got, se, r['chance_loss'] * to_bits, 'bits/char vs unigram entropy'
  return (r.get('final_accuracy'), r.get('final_accuracy_se'), r.get('majority_accuracy'),
          'accuracy vs majority class of the examples scored')


def _groups(rows) -> dict:
  """(task, T, model) -> rows over seeds."""
  g = {}
  for r in rows:
    g.setdefault((r['task'], r['seq_len'], r['model']), []).append(r)
  return g


def score_ci(rs) -> stats.Interval:
  got = [_score(r)[0] for r in rs]
  return stats.mean_ci(got, [_score(r)[1] for r in rs],
                       examples=min((r.get('eval_examples') or 0) for r in rs),
                       bounds=(0.0, math.inf) if rs[0]['task'] == 'charlm' else (0.0, 1.0))


def table(rows) -> str:
  lines = ['| task | T | model | seeds | held-out [95% CI] | baseline | metric | examples |',
           '|---|---|---|---|---|---|---|---|']
  for (task, t, model), rs in _groups(rows).items():
    div = [r['diverged_at_step'] for r in rs if r.get('diverged_at_step') is not None]
    base = _score(rs[0])[2]
    got_s = (f'diverged at step {", ".join(map(str, div))}' if div else score_ci(rs).fmt())
    lines.append(f'| {task} | {t} | {model} | {len(rs)} | {got_s} | '
                 f'{"-" if base is None else f"{base:.3f}"} | {_score(rs[0])[3]} | '
                 f'{rs[0].get("eval_examples") or "-"} |')
  lines.append('\nHeld-out: the whole held-out split of a data set (each example once) or '
               'fresh ListOps expressions; 95% interval over seeds and examples.')
  return '\n'.join(lines)


def claims(rows) -> list[study.Claim]:
  """Every (task, T, model) is judged over its seeds: one without a score (diverged) or
  without a baseline does not beat it."""
  if not rows:
    return []
  names = list(dict.fromkeys(r['task'] for r in rows))
  parts = []
  for (task, t, model), rs in _groups(rows).items():
    name = f'{model} beats the baseline on {task} at T={t}'
    base = _score(rs[0])[2]
    if base is None:
      parts.append(stats.missing(name, 'no baseline'))
    elif task == 'charlm':
      parts.append(stats.below(name, score_ci(rs), base, rule=f'< {base:.3f} bits/char'))
    else:
      parts.append(stats.above(name, score_ci(rs), base, rule=f'> {base:.3f} (majority)'))
  seeds = sorted({len(rs) for rs in _groups(rows).values()})
  steps = sorted({r.get('steps') for r in rows} - {None})
  return [study.claim(
      f'On {", ".join(names)} every model learns beyond the input-blind baseline (unigram '
      f'entropy for charlm; the majority class of the examples scored for classification) '
      f'within the step budget, at every length run.', parts,
      f'Budget: {"/".join(map(str, steps))} steps, {"/".join(map(str, seeds))} seed(s) per '
      f'point; held-out numbers with their 95% interval.')]


def draw(workdir: str) -> list[str]:
  del workdir  # a table, no figure
  return []
