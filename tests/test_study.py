"""The verdict rule every study's claims share (the claims are what the report
publishes); each study's claims on made-up rows are in test_claims.py (and long_range's
in test_long_range.py)."""
import pytest

from seqlab.studies import STUDIES, study

S, P, N = study.SUPPORTED, study.PARTLY, study.NOT_SUPPORTED


# ------------------------------------------------------------------------------- verdict
@pytest.mark.parametrize('parts, want, failed', [
    ({'a': True, 'b': True}, S, ''),
    ({'a': True, 'b': False}, P, 'b'),
    ({'a': False, 'b': True, 'c': False}, P, 'a, c'),
    ({'a': False, 'b': False}, N, 'a, b'),
    ({'a': True}, S, ''),
    ({'a': False}, N, 'a'),
    ({}, N, ''),                      # nothing measured supports nothing
])
def test_verdict_of_named_parts(parts, want, failed):
  assert study.verdict(parts) == (want, failed)


def test_claim_names_what_does_not_hold_only_when_unsupported():
  ok = study.claim('c', {'x': True}, 'numbers.')
  assert (ok.text, ok.verdict, ok.evidence) == ('c', S, 'numbers.')
  assert ok.line() == 'supported: numbers.'
  part = study.claim('c', {'x': True, 'y': False}, 'numbers.')
  assert part.verdict == P and part.evidence == 'numbers. Does not hold: y.'
  none = study.claim('c', {'x': False, 'y': False}, 'numbers.')
  assert none.verdict == N and none.evidence == 'numbers. Does not hold: x, y.'
  assert study.claim('c', {}, 'numbers.').evidence == 'numbers.'


def test_every_study_states_claims_from_rows():
  assert {'grad_flow', 'impulse', 'long_range', 'throughput', 'text'} <= set(STUDIES)
  for s in STUDIES.values():
    assert s.claims([]) == []          # no rows, no claim
