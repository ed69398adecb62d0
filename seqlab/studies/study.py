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
  claims(rows)              [Claim]: each claim's parts, each a number with its 95% interval
                            tested against a threshold (seqlab.studies.stats), and the
                            verdict those outcomes give

Figures, tables and claims read only results files, so a report is redrawn without
retraining. seqlab.studies.STUDIES lists the studies; the report walks that list.
"""
from __future__ import annotations

import dataclasses
import os
from collections import defaultdict

from seqlab.infra import writer
from seqlab.studies import stats

SUPPORTED, PARTLY, NOT_SUPPORTED, UNDECIDED, MEASURED = (
    'supported', 'partly supported', 'not supported', 'undecided', 'measured')


@dataclasses.dataclass(frozen=True)
class Claim:
  text: str       # the claim, as the literature or the seed states it
  verdict: str    # SUPPORTED | PARTLY | NOT_SUPPORTED | UNDECIDED | MEASURED (no test)
  evidence: str   # the setting and budget behind the numbers, and what failed
  parts: tuple = ()   # stats.Part: each part's number, interval, rule and outcome

  def line(self) -> str:
    return f'{self.verdict}: {self.evidence}'

  def counts(self) -> str:
    """'2 hold, 1 fails, 1 undecided' (the outcomes of the parts)."""
    n = {o: sum(p.outcome == o for p in self.parts)
         for o in (stats.HOLDS, stats.FAILS, stats.UNDECIDED)}
    words = [f'{n[stats.HOLDS]} hold' if n[stats.HOLDS] != 1 else '1 holds',
             f'{n[stats.FAILS]} fail' if n[stats.FAILS] != 1 else '1 fails',
             f'{n[stats.UNDECIDED]} undecided']
    return ', '.join(w for w, k in zip(words, n.values()) if k) or 'no parts'


def verdict(parts) -> str:
  """The verdict of a claim made of parts (stats.Part): 'supported' only when every part
  holds; 'partly supported' when some hold and some fail; 'not supported' when some fail
  and none holds; 'undecided' when none fails and some are undecided. No parts: not
  supported."""
  outcomes = [p.outcome for p in parts]
  holds = stats.HOLDS in outcomes
  fails = stats.FAILS in outcomes
  if not outcomes:
    return NOT_SUPPORTED
  if fails:
    return PARTLY if holds else NOT_SUPPORTED
  if stats.UNDECIDED in outcomes:
    return UNDECIDED
  return SUPPORTED


def claim(text: str, parts, evidence: str) -> Claim:
  """A Claim whose verdict is verdict(parts); the parts that fail or are undecided are
  named in the evidence."""
  if isinstance(parts, dict) or any(not isinstance(p, stats.Part) for p in parts):
    raise TypeError('a claim\'s parts are stats.Part (a number, its interval, a rule and an '
                    'outcome), not booleans')
  parts = tuple(parts)
  v = verdict(parts)
  failed = [p.name for p in parts if p.outcome == stats.FAILS]
  open_ = [p.name for p in parts if p.outcome == stats.UNDECIDED]
  if not parts:
    evidence = f'{evidence} Nothing to test: no part of the claim was measured.'.strip()
  if failed:
    evidence = f'{evidence} Does not hold: {", ".join(failed)}.'
  if open_:
    evidence = f'{evidence} Undecided: {", ".join(open_)}.'
  return Claim(text, v, evidence, parts)


def measured(text: str, evidence: str) -> Claim:
  """A Claim that states numbers without a test (verdict 'measured')."""
  return Claim(text, MEASURED, evidence)


def select_lr(rows: list[dict]) -> list[dict]:
  """The rows at the chosen lr of each scope (seqlab.sweep.choose_lrs: the lowest mean
  VALID loss, never the reported EVAL loss; per (model, task, T), or per (model, task)
  when the lr was chosen on some seeds and lengths and then held). Each kept row gets
  `lr_grid`, the lrs tried, and `lr_chosen_on`, in words. Rows without an 'lr' (no
  sweep.lrs) are kept as they are."""
  from seqlab import sweep
  chosen = sweep.choose_lrs(rows)
  grids = defaultdict(set)
  where = defaultdict(lambda: (set(), set()))
  for r in rows:
    if 'lr' in r and r.get('lr_select', True):
      key = sweep._scope_key(r)
      grids[key].add(r['lr'])
      where[key][0].add(r['seed'])
      where[key][1].add(r['seq_len'])
  out = []
  for r in rows:
    if 'lr' not in r or r.get('lr_grid'):
      out.append(r)
      continue
    key = sweep._scope_key(r)
    if key in chosen and r['lr'] != chosen[key]:
      continue
    seeds, lens = where[key]
    on = (f'VALID loss of seed(s) {"/".join(map(str, sorted(seeds)))} at '
          f'T={"/".join(map(str, sorted(lens)))}' if r.get('lr_scope') else
          'VALID loss, mean over seeds')
    out.append(dict(r, lr_grid=sorted(grids.get(key, {r['lr']})), lr_chosen_on=on))
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
