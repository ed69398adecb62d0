"""The statistics every claim uses (seqlab/studies/stats.py) and the verdict rule every
study's claims share; each study's claims on made-up rows are in test_claims.py,
test_long_range.py and test_paper.py."""
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from seqlab.studies import STUDIES, stats, study

S, P, N, U = study.SUPPORTED, study.PARTLY, study.NOT_SUPPORTED, study.UNDECIDED
HOLDS, FAILS, UND = stats.HOLDS, stats.FAILS, stats.UNDECIDED


# ------------------------------------------------------------------------------ intervals
def test_mean_ci_is_scipys_t_interval_without_eval_error():
  x = [0.1, 0.15, 0.12, 0.2, 0.11]
  iv = stats.mean_ci(x)
  lo, hi = scipy_stats.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=scipy_stats.sem(x))
  assert (iv.lo, iv.hi) == pytest.approx((lo, hi)) and iv.n == 5 and iv.df == 4


def test_mean_ci_adds_the_eval_sampling_error_in_quadrature():
  x, ses = [1.0, 1.0, 1.0], [0.3, 0.3, 0.3]      # seeds agree exactly: eval noise remains
  iv = stats.mean_ci(x, ses, examples=100)
  assert iv.se == pytest.approx(0.3 / math.sqrt(3)) and iv.se_seeds == 0
  assert iv.hi - iv.value == pytest.approx(scipy_stats.t.ppf(0.975, 2) * 0.3 / math.sqrt(3))
  one = stats.mean_ci([2.0], [0.1], examples=50)   # one seed: the normal quantile, eval only
  assert one.hi - 2.0 == pytest.approx(1.959964 * 0.1, rel=1e-5) and 'not measured' in one.how()
  assert not math.isfinite(stats.mean_ci([1.0, None]).value)     # a diverged seed


def test_proportion_ci_is_clopper_pearson():
  iv = stats.proportion_ci(3, 5)
  ci = scipy_stats.binomtest(3, 5).proportion_ci(method='exact')
  assert (iv.value, iv.lo, iv.hi) == pytest.approx((0.6, ci.low, ci.high))
  assert stats.proportion_ci(5, 5).hi == 1.0 and stats.proportion_ci(5, 5).lo < 0.5


def test_difference_uses_welch_degrees_of_freedom():
  a, b = [1.0, 1.2, 1.1, 0.9], [2.0, 2.6, 1.5]
  d = stats.difference(stats.mean_ci(b), stats.mean_ci(a))
  res = scipy_stats.ttest_ind(b, a, equal_var=False).confidence_interval(0.95)
  assert (d.lo, d.hi) == pytest.approx((res.low, res.high))


def test_bootstrap_ci_is_seeded_and_covers_the_statistic():
  x = np.random.default_rng(0).normal(10.0, 1.0, 40)
  a, b = stats.bootstrap_ci(x), stats.bootstrap_ci(x)
  assert (a.lo, a.hi) == (b.lo, b.hi) and a.lo < np.median(x) < a.hi
  assert stats.bootstrap_ci([3.0, 3.0, 3.0]).fmt() == '3'      # no spread: no interval


def test_zero_is_written_as_zero():
  assert stats.format_number(0.0) == '0' and stats.exact(0.0).fmt() == '0'
  assert stats.format_number(1e-45, '.2g') == '1e-45'          # only a true 0 is 0


# ------------------------------------------------------------------------------- outcomes
def iv(value, half, n=5):
  return stats.Interval(value, value - half, value + half, n=n, se=half / 2.78, df=n - 1,
                        se_seeds=half / 2.78)


@pytest.mark.parametrize('test, args, want', [
    (stats.below, (iv(0.05, 0.02), 0.1), HOLDS),
    (stats.below, (iv(0.15, 0.02), 0.1), FAILS),
    (stats.below, (iv(0.09, 0.02), 0.1), UND),
    (stats.below, (iv(math.inf, 0), 0.1), FAILS),              # diverged: not below anything
    (stats.above, (iv(0.5, 0.1), 0.2), HOLDS),
    (stats.above, (iv(0.1, 0.05), 0.2), FAILS),
    (stats.above, (iv(0.25, 0.1), 0.2), UND),
    (stats.within, (iv(1.0, 0.05), 0.9, 1.1), HOLDS),          # at chance: two-sided
    (stats.within, (iv(1.3, 0.05), 0.9, 1.1), FAILS),          # far above: not at chance
    (stats.within, (iv(0.5, 0.05), 0.9, 1.1), FAILS),          # far below: not at chance
    (stats.within, (iv(1.08, 0.05), 0.9, 1.1), UND),
])
def test_three_outcomes(test, args, want):
  assert test('x', *args).outcome == want


def test_an_untrained_uniform_predictor_is_not_at_a_memoryless_baseline():
  # issue 31: a one-sided "at the baseline" test passed a predictor at 13x the baseline
  assert stats.within('copy at the baseline', iv(13.0, 0.5), 0.9, 1.1).outcome == FAILS


def test_undecided_says_what_would_decide_it():
  p = stats.below('x', iv(0.09, 0.02, n=5), 0.1)
  assert p.outcome == UND and p.note.startswith('about ') and 'seeds' in p.note
  n = int(p.note.split()[1])
  assert n > 5        # more than there are: (1.96 * se / 0.01)^2 x 5
  # eval noise dominating: examples, not seeds
  e = stats.Interval(0.09, 0.07, 0.11, n=1, se=0.0102, se_eval=0.0102, examples=200)
  assert 'held-out examples per seed' in stats.below('x', e, 0.1).note
  assert 'seeds' in stats.above('x', stats.proportion_ci(3, 5), 0.5).note


def test_kleene_logic():
  assert stats.all_of([HOLDS, HOLDS]) == HOLDS and stats.all_of([HOLDS, UND]) == UND
  assert stats.all_of([UND, FAILS]) == FAILS and stats.all_of([]) == FAILS
  assert stats.any_of([FAILS, HOLDS]) == HOLDS and stats.any_of([FAILS, UND]) == UND
  assert stats.any_of([FAILS]) == FAILS and stats.negate(UND) == UND
  assert stats.negate(HOLDS) == FAILS


# -------------------------------------------------------------------------------- verdict
def parts(*outcomes):
  return [stats.Part(f'p{i}', o) for i, o in enumerate(outcomes)]


@pytest.mark.parametrize('outcomes, want', [
    ((HOLDS, HOLDS), S),
    ((HOLDS, FAILS), P),
    ((HOLDS, FAILS, UND), P),
    ((FAILS, FAILS), N),
    ((FAILS, UND), N),
    ((HOLDS, UND), U),
    ((UND,), U),
    ((), N),                       # nothing measured supports nothing
])
def test_verdict(outcomes, want):
  assert study.verdict(parts(*outcomes)) == want


def test_claim_names_what_fails_and_what_is_undecided():
  ok = study.claim('c', parts(HOLDS), 'numbers.')
  assert (ok.verdict, ok.evidence, ok.counts()) == (S, 'numbers.', '1 holds')
  c = study.claim('c', parts(HOLDS, FAILS, UND), 'numbers.')
  assert c.evidence == 'numbers. Does not hold: p1. Undecided: p2.'
  assert c.counts() == '1 holds, 1 fails, 1 undecided' and len(c.parts) == 3
  assert 'Nothing to test' in study.claim('c', [], 'numbers.').evidence
  assert study.measured('c', 'numbers.').verdict == study.MEASURED


def test_every_study_states_claims_from_rows():
  assert {'grad_flow', 'impulse', 'long_range', 'throughput', 'text'} <= set(STUDIES)
  for s in STUDIES.values():
    assert s.claims([]) == []          # no rows, no claim


def test_a_claim_part_is_a_tested_number_never_a_bare_boolean():
  with pytest.raises(TypeError, match='stats.Part'):
    study.claim('c', {'x': True}, 'numbers.')
  with pytest.raises(TypeError, match='stats.Part'):
    study.claim('c', [True], 'numbers.')
