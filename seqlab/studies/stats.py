"""The statistics every claim uses: 95% intervals and three-outcome tests.

Every number a verdict reads is an Interval: a point value with a 95% interval
[lo, hi] from scipy.stats, never a hand-written formula:
  mean_ci        mean over seeds, Student-t interval (scipy.stats.t; cut at the bounds the
                 quantity cannot leave: a loss >= 0, an accuracy in [0, 1]) whose standard error
                 adds, in quadrature, the between-seed error s/sqrt(n) and the
                 eval-sampling error of each seed's number (its per-example standard
                 error): sqrt(s^2/n + sum(se_i^2)/n^2). One seed gives the eval-sampling
                 error alone (normal quantile) and says that the seed-to-seed spread was
                 not measured.
  difference     a - b of two independent Intervals (Welch-Satterthwaite degrees of freedom)
  proportion_ci  k of n (solved seeds), Clopper-Pearson (scipy.stats.binomtest, exact)
  bootstrap_ci   any statistic of samples (timings), scipy.stats.bootstrap (BCa)
A part of a claim is one test of an Interval against a threshold with one of three
outcomes (HOLDS, FAILS, UNDECIDED):
  below / above  one-sided: holds when the whole interval is on the claimed side, fails
                 when the whole interval is on the other side, else undecided
  within         two-sided equivalence ("at chance"): holds when the interval lies inside
                 the band, fails when it lies wholly outside, else undecided
An undecided part says about how many seeds (or held-out examples) would decide it at the
same mean: the interval's half-width shrinks as 1/sqrt(n).
Parts combine with Kleene's three-valued logic (all_of, any_of, negate).
"""
from __future__ import annotations

import dataclasses
import math
import warnings

import numpy as np

HOLDS, FAILS, UNDECIDED = 'holds', 'fails', 'undecided'
CONFIDENCE = 0.95


def _t(df: float) -> float:
  """The two-sided 95% quantile of Student's t with df degrees of freedom (normal: inf)."""
  from scipy import stats
  if not math.isfinite(df):
    return float(stats.norm.ppf(0.5 + CONFIDENCE / 2))
  return float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))


@dataclasses.dataclass(frozen=True)
class Interval:
  value: float                 # the point estimate (a mean, a proportion, a slope)
  lo: float                    # the 95% interval
  hi: float
  n: int = 0                   # seeds (or timed samples) behind it
  se: float | None = None      # its standard error, where the interval is value +- q se
  df: float = math.inf         # degrees of freedom of q (inf: normal)
  se_seeds: float = 0.0        # the between-seed part of se
  se_eval: float = 0.0         # the eval-sampling part of se
  examples: int = 0            # held-out examples per seed behind se_eval
  kind: str = 'mean'           # mean | proportion | bootstrap | exact

  def fmt(self, spec: str = '.3g') -> str:
    if not math.isfinite(self.value):
      return 'not finite'
    if self.kind == 'exact' or (self.lo == self.value == self.hi):
      return format_number(self.value, spec)
    return (f'{format_number(self.value, spec)} '
            f'[{format_number(self.lo, spec)}, {format_number(self.hi, spec)}]')

  def scaled(self, k: float) -> 'Interval':
    """The interval of value * k (k > 0), e.g. a loss over its chance level."""
    def s(x):
      return None if x is None else x * k
    return dataclasses.replace(self, value=self.value * k, lo=self.lo * k, hi=self.hi * k,
                               se=s(self.se), se_seeds=self.se_seeds * k,
                               se_eval=self.se_eval * k)

  def how(self) -> str:
    """How the interval was computed, in words."""
    if self.kind == 'proportion':
      return f'Clopper-Pearson over {self.n} seed(s)'
    if self.kind == 'bootstrap':
      return f'bootstrap over {self.n} samples'
    if self.kind == 'exact':
      return 'exact'
    if self.n <= 1:
      return 'eval-sampling error only (1 seed: the seed-to-seed spread is not measured)'
    return f't over {self.n} seeds with the eval-sampling error'


def format_number(x: float, spec: str = '.3g') -> str:
  """A number as text; 0 stays 0 (an underflow is written 0, never 1e-45)."""
  if x == 0:
    return '0'
  return format(x, spec)


def exact(value: float) -> Interval:
  """A number with no sampling error (a count, a theoretical value)."""
  return Interval(value, value, value, kind='exact')


def _finite(values):
  return [float(v) for v in values if v is not None and math.isfinite(v)]


def mean_ci(values, ses=None, examples: int = 0, bounds=(-math.inf, math.inf)) -> Interval:
  """Mean over seeds with its 95% interval (module docstring). `ses` are the per-seed
  eval-sampling standard errors (None: no eval error known); `bounds` the range the
  quantity cannot leave (a loss >= 0, an accuracy in [0, 1]): the interval is cut there.
  Any missing or non-finite value (a diverged seed) gives a non-finite Interval."""
  vals = [None if v is None else float(v) for v in values]
  if not vals or len(_finite(vals)) != len(vals):
    return Interval(math.inf, math.inf, math.inf, n=len(vals))
  n = len(vals)
  mean = float(np.mean(vals))
  se_seeds = float(np.std(vals, ddof=1) / math.sqrt(n)) if n > 1 else 0.0
  ses = [0.0 if s is None or not math.isfinite(s) else float(s) for s in (ses or [])]
  se_eval = math.sqrt(sum(s * s for s in ses)) / n if ses else 0.0
  se = math.sqrt(se_seeds ** 2 + se_eval ** 2)
  df = (n - 1) if n > 1 else math.inf
  q = _t(df)
  return Interval(mean, max(mean - q * se, bounds[0]), min(mean + q * se, bounds[1]), n=n,
                  se=se, df=df, se_seeds=se_seeds, se_eval=se_eval, examples=int(examples))


def difference(a: Interval, b: Interval) -> Interval:
  """a - b for independent a and b, each value +- q se: the standard errors add in
  quadrature, the degrees of freedom by Welch-Satterthwaite."""
  if not (math.isfinite(a.value) and math.isfinite(b.value)) or a.se is None or b.se is None:
    return Interval(math.nan, math.nan, math.nan, n=min(a.n, b.n))
  se = math.sqrt(a.se ** 2 + b.se ** 2)
  terms = [(x.se ** 2, x.df) for x in (a, b) if x.se > 0]
  if se == 0 or any(not math.isfinite(df) for _, df in terms):
    df = math.inf
  else:
    df = se ** 4 / sum(v * v / d for v, d in terms)
  q = _t(df)
  d = a.value - b.value
  return Interval(d, d - q * se, d + q * se, n=min(a.n, b.n), se=se, df=df,
                  se_seeds=math.hypot(a.se_seeds, b.se_seeds),
                  se_eval=math.hypot(a.se_eval, b.se_eval),
                  examples=min(a.examples, b.examples) if a.examples and b.examples else 0)


def proportion_ci(k: int, n: int) -> Interval:
  """k of n with the exact (Clopper-Pearson) 95% interval."""
  from scipy import stats
  if n <= 0:
    return Interval(math.nan, 0.0, 1.0, n=0, kind='proportion')
  ci = stats.binomtest(int(k), int(n)).proportion_ci(confidence_level=CONFIDENCE,
                                                      method='exact')
  return Interval(k / n, float(ci.low), float(ci.high), n=int(n), kind='proportion')


def bootstrap_ci(samples, statistic=np.median, seed: int = 0) -> Interval:
  """statistic(samples) with a 95% BCa bootstrap interval (scipy.stats.bootstrap; a fixed
  seed, so a report redraws to the same numbers). `samples` is one sequence, or a tuple of
  sequences for a statistic of several (resampled independently)."""
  from scipy import stats
  data = samples if isinstance(samples, tuple) else (samples,)
  data = tuple(np.asarray(d, np.float64) for d in data)
  value = float(statistic(*data))
  n = min(len(d) for d in data)
  if n < 2 or any(np.ptp(d) == 0 for d in data):
    return Interval(value, value, value, n=n, kind='bootstrap')
  def run(method):
    with warnings.catch_warnings():   # BCa on near-degenerate samples: percentile instead
      warnings.simplefilter('ignore')
      res = stats.bootstrap(data, statistic, confidence_level=CONFIDENCE, n_resamples=999,
                            method=method, vectorized=False, rng=np.random.default_rng(seed))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)
  lo, hi = run('percentile' if n < 5 else 'BCa')
  if not (math.isfinite(lo) and math.isfinite(hi)):
    lo, hi = run('percentile')
  lo, hi = min(lo, value), max(hi, value)
  return Interval(value, lo, hi, n=n, se=(hi - lo) / (2 * _t(math.inf)), kind='bootstrap')


# ------------------------------------------------------------------------------ outcomes
@dataclasses.dataclass(frozen=True)
class Part:
  """One part of a claim: its name, the number it reads, the rule and the outcome."""
  name: str                    # e.g. 'lstm solves it at T=128'
  outcome: str                 # HOLDS | FAILS | UNDECIDED
  estimate: str = ''           # the number with its interval, e.g. '0.021 [0.015, 0.027]'
  rule: str = ''               # what holds means, e.g. '< 0.1'
  note: str = ''               # why it fails (a likely cause), or what would decide it

  def line(self) -> str:
    bits = [self.name]
    if self.estimate:
      bits.append(f'{self.estimate}' + (f' ({self.rule})' if self.rule else ''))
    text = ': '.join(bits) + f': {self.outcome}'
    return text + (f' ({self.note})' if self.note else '')


def _needed(iv: Interval, distance: float) -> str:
  """About how many seeds, or held-out examples per seed, would shrink the interval's
  half-width below `distance` (the gap between the estimate and the threshold)."""
  if iv.kind == 'proportion':
    p = min(max(iv.value, 1e-3), 1 - 1e-3)
    if distance <= 0:
      return 'the estimate sits on the threshold: more seeds would not decide it'
    n = math.ceil(_t(math.inf) ** 2 * p * (1 - p) / distance ** 2)
    return f'about {max(n, iv.n + 1)} seeds would decide it'
  if iv.se is None or iv.se == 0 or not math.isfinite(iv.value):
    return 'not decidable from these numbers'
  if distance <= 0:
    return 'the estimate sits on the threshold: more data would not decide it at this value'
  # the projection uses the normal quantile: at the n it asks for, t's is close to it
  factor = (_t(math.inf) * iv.se / distance) ** 2
  if iv.kind == 'bootstrap':
    return f'about {math.ceil(iv.n * factor)} timed samples would decide it'
  if iv.se_seeds >= iv.se_eval or not iv.examples:
    seeds = max(math.ceil(max(iv.n, 1) * factor), iv.n + 1)
    return f'about {seeds} seeds would decide it'
  return f'about {math.ceil(iv.examples * factor):,} held-out examples per seed would decide it'


def below(name: str, iv: Interval, threshold: float, fails_note: str = '', spec='.3g',
          rule: str | None = None) -> Part:
  """Holds when the interval lies below `threshold`, fails when it lies at or above it."""
  rule = rule or f'< {format_number(threshold, spec)}'
  if not math.isfinite(iv.value) or iv.lo >= threshold:
    return Part(name, FAILS, iv.fmt(spec), rule, fails_note)
  if iv.hi < threshold:
    return Part(name, HOLDS, iv.fmt(spec), rule)
  return Part(name, UNDECIDED, iv.fmt(spec), rule, _needed(iv, abs(threshold - iv.value)))


def above(name: str, iv: Interval, threshold: float, fails_note: str = '', spec='.3g',
          rule: str | None = None) -> Part:
  """Holds when the interval lies above `threshold`, fails when it lies at or below it."""
  rule = rule or f'> {format_number(threshold, spec)}'
  if not math.isfinite(iv.value) or iv.hi <= threshold:
    return Part(name, FAILS, iv.fmt(spec), rule, fails_note)
  if iv.lo > threshold:
    return Part(name, HOLDS, iv.fmt(spec), rule)
  return Part(name, UNDECIDED, iv.fmt(spec), rule, _needed(iv, abs(iv.value - threshold)))


def within(name: str, iv: Interval, lo: float, hi: float, fails_note: str = '', spec='.3g',
           rule: str | None = None) -> Part:
  """Two-sided equivalence: holds when the interval lies inside [lo, hi], fails when it
  lies wholly outside, else undecided."""
  rule = rule or f'in [{format_number(lo, spec)}, {format_number(hi, spec)}]'
  if not math.isfinite(iv.value) or iv.hi < lo or iv.lo > hi:
    return Part(name, FAILS, iv.fmt(spec), rule, fails_note)
  if lo <= iv.lo and iv.hi <= hi:
    return Part(name, HOLDS, iv.fmt(spec), rule)
  if lo <= iv.value <= hi:   # inside, but the interval reaches past an edge
    distance = min(iv.value - lo, hi - iv.value)
  else:
    distance = min(abs(iv.value - lo), abs(iv.value - hi))
  return Part(name, UNDECIDED, iv.fmt(spec), rule, _needed(iv, distance))


def missing(name: str, why: str = 'not run') -> Part:
  """A part the claim names whose numbers do not exist: it fails, saying why."""
  return Part(name, FAILS, '-', '', why)


# ------------------------------------------------------------------------ three-valued logic
def all_of(outcomes) -> str:
  """Kleene AND: fails if any fails, else undecided if any is, else holds (empty: fails)."""
  outcomes = list(outcomes)
  if not outcomes or FAILS in outcomes:
    return FAILS
  return UNDECIDED if UNDECIDED in outcomes else HOLDS


def any_of(outcomes) -> str:
  """Kleene OR: holds if any holds, else undecided if any is, else fails (empty: fails)."""
  outcomes = list(outcomes)
  if HOLDS in outcomes:
    return HOLDS
  return UNDECIDED if UNDECIDED in outcomes else FAILS


def negate(outcome: str) -> str:
  return {HOLDS: FAILS, FAILS: HOLDS}.get(outcome, UNDECIDED)
