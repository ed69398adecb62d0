"""Real text and ListOps: the same models trained by the one training loop on a
character-level LM, text classification and LRA ListOps (offline by default; see
experiments/text.py), reported as bits/char against the unigram entropy (charlm) and
held-out accuracy against the majority class (textclf, listops).
"""
from __future__ import annotations

import math
import os
import sys

from seqlab import sweep
from seqlab.infra import writer
from seqlab.studies import study

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


def _score(r) -> tuple[float | None, float | None, str]:
  """(held-out score, its baseline, what they are) of one results row; higher bits are
  worse, higher accuracy better."""
  if r['task'] == 'charlm':
    bits = [None if r.get(k) is None else r[k] / math.log(2)
            for k in ('final_loss', 'chance_loss')]
    return bits[0], bits[1], 'bits/char vs unigram entropy'
  return r.get('final_accuracy'), r.get('majority_accuracy'), 'accuracy vs majority class'


def _beats(r) -> bool | None:
  got, base, _ = _score(r)
  if got is None or base is None:
    return None
  return got < base if r['task'] == 'charlm' else got > base


def table(rows) -> str:
  lines = ['| task | T | model | seed | held-out | baseline | metric |',
           '|---|---|---|---|---|---|---|']
  for r in rows:
    got, base, what = _score(r)
    if r.get('diverged_at_step') is not None:
      got_s = f'diverged at step {r["diverged_at_step"]}'
    else:
      got_s = '-' if got is None else f'{got:.3f}'
    lines.append(f'| {r["task"]} | {r["seq_len"]} | {r["model"]} | {r["seed"]} | {got_s} | '
                 f'{"-" if base is None else f"{base:.3f}"} | {what} |')
  return '\n'.join(lines)


def claims(rows) -> list[study.Claim]:
  """Every point is judged: one without a score (diverged) or without a baseline does
  not beat it."""
  if not rows:
    return []
  judged = [(r, bool(_beats(r))) for r in rows]
  names = list(dict.fromkeys(r['task'] for r in rows))

  def numbers(r):
    got, base, _ = _score(r)
    if got is None:
      return 'diverged' if r.get('diverged_at_step') is not None else 'no score'
    return f'{got:.3f} vs ' + ('no baseline' if base is None else f'{base:.3f}')
  return [study.claim(
      f'On {", ".join(names)} every model learns beyond the input-blind baseline (unigram '
      f'entropy for charlm; majority class for classification) within the step budget, at '
      f'every length and seed run.',
      {f'{r["model"]}/{r["task"]}/T={r["seq_len"]}/seed {r["seed"]}': b for r, b in judged},
      f'{sum(b for _, b in judged)} of {len(judged)} points beat their baseline: ' +
      ', '.join(f'{r["model"]}/{r["task"]}/T={r["seq_len"]}/seed {r["seed"]} {numbers(r)}'
                for r, _ in judged) + '.')]


def draw(workdir: str) -> list[str]:
  del workdir  # a table, no figure
  return []
