"""The published numbers the paper study compares with, and the verdicts of a row:
its number in the paper's metric with its 95% interval, what differs from the paper's
setting, agrees / differs / not comparable (seqlab.studies.paper's docstring), and the
three-outcome test of one pair's ordering."""
from __future__ import annotations

import math

from seqlab.studies import stats

BAI = 'Bai et al. 2018, Table 1'
# group -> the published numbers: metric, the paper's task, T, step budget and chance level,
# model -> value. Steps: Bai et al.'s repository scripts (epochs x examples / batch), LRA's
# listops config.
PUBLISHED = {
    'adding': dict(metric='mse', task='adding', t=600, steps=7000, chance=1 / 6, source=BAI,
                   values={'lstm': 0.164, 'gru': 5.3e-5, 'rnn': 0.177}),
    'copy': dict(metric='loss', task='copy', t=1000, steps=15_600,
                 chance=10 * math.log(8) / 1020, source=BAI,
                 values={'lstm': 0.0204, 'gru': 0.0197, 'rnn': 0.0202}),
    # MNIST's majority class ('1') is 1,135 of the 10,000 test images.
    'smnist': dict(metric='accuracy', task='smnist', t=784, steps=18_750, chance=0.1135,
                   source=BAI, values={'lstm': 0.872, 'gru': 0.962, 'rnn': 0.215}),
    'psmnist': dict(metric='accuracy', task='psmnist', t=784, steps=18_750, chance=0.1135,
                    source=BAI, values={'lstm': 0.857, 'gru': 0.873, 'rnn': 0.253}),
    'listops': dict(metric='accuracy', task='listops', t=2000, steps=5000, chance=None,
                    source='Tay et al. 2021 (LRA)', values={'transformer': 0.3637}),
}
TOLERANCE = {'accuracy': 0.02, 'loss': math.log(1.25)}   # accuracy points; log of a factor


def _kind(group: str) -> str:
  """'accuracy' (higher is better) or 'loss' (an MSE or cross-entropy: lower is better)."""
  return 'accuracy' if PUBLISHED[group]['metric'] == 'accuracy' else 'loss'


def value(row: dict) -> float | None:
  """The row's number in the paper's metric: held-out accuracy or loss."""
  v = row.get('final_accuracy') if _kind(row['group']) == 'accuracy' else row.get('final_loss')
  return v if v is not None and math.isfinite(v) else None


def value_ci(rs: list[dict]) -> stats.Interval:
  """Mean over seeds of the paper's metric with its 95% interval (seeds and held-out
  examples)."""
  acc = _kind(rs[0]['group']) == 'accuracy'
  return stats.mean_ci([value(r) for r in rs],
                       [r.get('final_accuracy_se' if acc else 'final_loss_se') for r in rs],
                       examples=min((r.get('eval_examples') or 0) for r in rs),
                       bounds=(0.0, 1.0) if acc else (0.0, math.inf))


def score_ci(rs: list[dict]) -> stats.Interval:
  """The number orderings compare, higher better: accuracy, or -log(loss) (a loss's
  ratios are what matter), each seed transformed, then mean with its 95% interval."""
  acc = _kind(rs[0]['group']) == 'accuracy'
  if acc:
    return value_ci(rs)
  vals = [value(r) for r in rs]
  if any(v is None or v <= 0 for v in vals):
    return stats.Interval(-math.inf, -math.inf, -math.inf, n=len(rs))
  return stats.mean_ci([-math.log(v) for v in vals],
                       [(r.get('final_loss_se') or 0.0) / v for r, v in zip(rs, vals)],
                       examples=min((r.get('eval_examples') or 0) for r in rs))


def paper_score(group: str, model: str) -> float:
  v = PUBLISHED[group]['values'][model]
  return v if _kind(group) == 'accuracy' else -math.log(v)

def differences(rs: list[dict]) -> list[str]:
  """What differs from the paper's setting in these rows: task/data, T, step budget."""
  r0, pub = rs[0], PUBLISHED[rs[0]['group']]
  out = []
  if r0['task'] != pub['task']:
    out.append(f'data {r0["task"]} not {pub["task"]}')
  if r0['seq_len'] != pub['t']:
    out.append(f'T={r0["seq_len"]} not {pub["t"]}')
  if r0.get('steps') != pub['steps']:
    out.append(f'{r0.get("steps")} steps not {pub["steps"]:,}')
  return out


def compare(rs: list[dict]) -> dict:
  """One (group, model) row against its published number: seqlab's interval, and the
  verdict agrees / differs (comparable) or not comparable (module docstring)."""
  r0 = rs[0]
  group, model = r0['group'], r0['model']
  pub = PUBLISHED[group]
  iv = value_ci(rs)
  out = dict(interval=iv, seeds=len(rs), diverged=sum(value(r) is None for r in rs),
             differs_in=differences(rs), paper=pub['values'].get(model))
  if out['paper'] is None:
    out['verdict'], out['why'] = 'control', 'no published number (a control run)'
  elif out['diverged']:
    out['verdict'], out['why'] = 'differs', f'{out["diverged"]} of {len(rs)} seeds diverged'
  elif out['differs_in']:
    out['verdict'] = 'not comparable'
    out['why'] = ', '.join(out['differs_in']) + ': the ordering alone is judged'
  else:
    tol, paper = TOLERANCE[_kind(group)], out['paper']
    if _kind(group) == 'accuracy':
      ok = iv.lo - tol <= paper <= iv.hi + tol
      gap = f'{100 * (iv.value - paper):+.1f} points'
    else:
      ok = iv.lo / math.exp(tol) <= paper <= iv.hi * math.exp(tol)
      gap = f'x{iv.value / paper:.3g}'
    out['verdict'] = 'agrees' if ok else 'differs'
    out['why'] = ('the paper within the 95% interval widened by the tolerance' if ok else
                  f'a gap of {gap} beyond the interval and the tolerance')
  return out


def _num(v: float, group: str) -> str:
  return f'{100 * v:.1f}%' if _kind(group) == 'accuracy' else f'{v:.3g}'


def _iv(iv: stats.Interval, group: str) -> str:
  if not math.isfinite(iv.value):
    return 'diverged'
  if _kind(group) == 'accuracy':
    return f'{100 * iv.value:.1f}% [{100 * iv.lo:.1f}, {100 * iv.hi:.1f}]'
  return iv.fmt()

def _relation(d: float, tol: float) -> str:
  return '>' if d > tol else '<' if d < -tol else '='


def judge(want: str, d: stats.Interval, tol: float) -> str:
  """The outcome of the paper's relation `want` of a to b against the interval d of
  score(a) - score(b). Level ('='): holds when d lies within +-tol, fails when it lies
  wholly outside. Better ('>'): holds when d lies above 0, fails when it lies below 0 or
  within +-tol (level where the paper found a gap); '<' likewise."""
  if want == '=':
    if -tol <= d.lo and d.hi <= tol:
      return stats.HOLDS
    return stats.FAILS if d.lo > tol or d.hi < -tol else stats.UNDECIDED
  lo, hi = (d.lo, d.hi) if want == '>' else (-d.hi, -d.lo)
  if lo > 0:
    return stats.HOLDS
  return stats.FAILS if hi < 0 or (-tol <= lo and hi <= tol) else stats.UNDECIDED


def seqlab_relation(d: stats.Interval, tol: float) -> str:
  """In words, what seqlab's interval says of a against b: better, worse, level."""
  if -tol <= d.lo and d.hi <= tol:
    return '='
  return '>' if d.lo > 0 else '<' if d.hi < 0 else 'undecided'


WORDS = {'>': 'better than', '<': 'worse than', '=': 'level with'}

def order_text(group: str) -> str:
  """The paper's ordering, best first, '~' between models level within the tolerance."""
  tol = TOLERANCE[_kind(group)]
  ms = sorted(PUBLISHED[group]['values'], key=lambda m: -paper_score(group, m))
  out = ms[0]
  for prev, m in zip(ms, ms[1:]):
    out += (' ~ ' if paper_score(group, prev) - paper_score(group, m) <= tol else ' > ') + m
  return out
