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
import os

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
