"""What every study shares: the Claim it states, the verdict rule, and how a run ends.

A study is one module in seqlab/studies/ with the same interface:

  NAME                      its name: experiments/<NAME>.py is its config, runs/<NAME> its workdir
  TITLE                     its section title in the report
  CAPTIONS                  figure file stem -> caption
  validate(config)          every check a run makes before it measures anything
  run(config, workdir)      measures every point not yet in workdir/results.jsonl -> rows
  rows(workdir)             the results rows, read from the workdir's files only
  draw(workdir)             figures (PNG and PDF) from the results files -> paths
  table(rows)               a Markdown table of the rows
  claims(rows)              [Claim]: each claim with a verdict computed from the rows

Figures, tables and claims read only results files, so a report is redrawn without
retraining. seqlab.studies.STUDIES lists the studies; the report walks that list.
"""
from __future__ import annotations

import dataclasses
import math
import os
from collections import defaultdict

from seqlab.infra import writer

SUPPORTED, PARTLY, NOT_SUPPORTED, MEASURED = (
    'supported', 'partly supported', 'not supported', 'measured')


@dataclasses.dataclass(frozen=True)
class Claim:
  text: str       # the claim, as the literature or the seed states it
  verdict: str    # SUPPORTED | PARTLY | NOT_SUPPORTED | MEASURED (no pass/fail)
  evidence: str   # the numbers the verdict was computed from, and what failed

  def line(self) -> str:
    return f'{self.verdict}: {self.evidence}'


def verdict(parts: dict[str, bool]) -> tuple[str, str]:
  """(verdict, what failed) for a claim made of named parts: 'supported' only when
  every part holds, 'not supported' when none does, else 'partly supported'."""
  failed = [name for name, ok in parts.items() if not ok]
  if not parts or len(failed) == len(parts):
    return NOT_SUPPORTED, ', '.join(failed)
  if failed:
    return PARTLY, ', '.join(failed)
  return SUPPORTED, ''


def claim(text: str, parts: dict[str, bool], evidence: str) -> Claim:
  """A Claim whose verdict is verdict(parts); the failed parts are named in the evidence."""
  v, failed = verdict(parts)
  if v != SUPPORTED and failed:
    evidence = f'{evidence} Does not hold: {failed}.'
  return Claim(text, v, evidence)


def _mean_or_inf(values) -> float:
  """Mean of the values; inf when any is missing or not finite (a diverged seed)."""
  ok = [v for v in values if v is not None and math.isfinite(v)]
  return sum(ok) / len(ok) if ok and len(ok) == len(values) else math.inf


def select_lr(rows: list[dict], keys=('model', 'task', 'seq_len')) -> list[dict]:
  """The rows of the chosen lr of each group (rows equal on `keys`): the lr whose mean
  validation loss over seeds is lowest (a diverged seed counts as inf). Each chosen row
  gets `lr_grid`, the lrs tried. Rows without an 'lr' (no sweep.lrs) are kept as they are.
  The validation loss is `valid_loss` (VALID split, apart from the reported EVAL), else
  `final_loss`."""
  groups = defaultdict(lambda: defaultdict(list))
  plain = []
  for r in rows:
    if 'lr' not in r or r.get('lr_grid'):
      plain.append(r)
    else:
      groups[tuple(r.get(k) for k in keys)][r['lr']].append(r)
  out = list(plain)
  for by_lr in groups.values():
    def score(lr):
      return _mean_or_inf([r.get('valid_loss', r.get('final_loss')) for r in by_lr[lr]])
    best = min(sorted(by_lr), key=score)
    grid = sorted(by_lr)
    out += [dict(r, lr_grid=grid) for r in by_lr[best]]
  return out


def lr_cause(rs: list[dict]) -> str | None:
  """Why a group of chosen rows may have failed, as far as the lr grid tells:
  'lr: best at the edge of the grid ...' when the chosen lr is the grid's smallest or
  largest of three or more (the optimum may lie outside), else None."""
  grid = rs[0].get('lr_grid') or []
  lr = rs[0].get('lr')
  if len(grid) >= 3 and lr in (grid[0], grid[-1]):
    edge = 'smallest' if lr == grid[0] else 'largest'
    return f'lr: the best is the {edge} tried ({lr:g} of {"/".join(f"{g:g}" for g in grid)})'
  return None


def finish(study, workdir: str) -> list[dict]:
  """The end of every study's run: table.md, figures and claims from the results files,
  printed for the user. Returns the rows."""
  rows = study.rows(workdir)
  if not writer.is_writer():
    return rows
  table = study.table(rows)
  writer.write_text_atomic(os.path.join(workdir, 'table.md'), table + '\n')
  print(table)
  figures = study.draw(workdir) if rows else []
  print(f'results: {os.path.join(workdir, "results.jsonl")}')
  if figures:
    print('figures: ' + ', '.join(p for p in figures if p.endswith('.png')) + ' (PDF beside each)')
  for c in study.claims(rows):
    print(f'claim: {c.text}\n  {c.line()}')
  return rows
