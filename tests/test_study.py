"""The verdict rule and every branch of every study's claims, on made-up rows that
should and should not support each claim (the claims are what the report publishes)."""
import math

import pytest

from seqlab.studies import STUDIES, grad_flow, impulse, long_range, study, text, throughput

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


# ---------------------------------------------------------------------------- long_range
def lr_row(task, model, t, ratio, seed=0, chance=1 / 6):
  """A results row whose held-out loss is `ratio` x chance (None: diverged)."""
  return dict(task=task, model=model, seq_len=t, seed=seed, chance_loss=chance,
              final_loss=None if ratio is None else ratio * chance)


def only(claims, words):
  found = [c for c in claims if words in c.text]
  assert len(found) == 1, [c.text for c in claims]
  return found[0]


@pytest.mark.parametrize('rnn, lstm, gru, want', [
    ((0.95, 0.9), (0.01, 0.02), (0.05, 0.05), S),
    ((0.55, 0.6), (0.09, 0.09), (0.05, 0.05), S),    # 0.55 > AT_CHANCE, 0.09 < SOLVED
    ((0.45, 0.9), (0.01, 0.02), (0.05, 0.05), P),    # rnn learned at T=50: not near chance
    ((0.95, 0.9), (0.01, 0.2), (0.05, 0.05), P),     # lstm not solved at T=100
    ((0.95, 0.9), (0.11, 0.02), (0.05, 0.05), P),
    ((0.95, 0.9), (0.01, 0.02), (None, None), P),    # gru only diverged: not solved
    ((0.2, 0.3), (0.5, 0.6), (0.9, 0.9), N),
])
def test_adding_claim(rnn, lstm, gru, want):
  rows = []
  for model, ratios in (('rnn', rnn), ('lstm', lstm), ('gru', gru)):
    for t, r in zip((50, 100), ratios):
      rows.append(lr_row('adding', model, t, r))
  c = only(long_range.claims(rows), 'Adding problem')
  assert c.verdict == want, c.evidence
  if want == P and rnn[0] < 0.5:
    assert 'Does not hold: the rnn stays near chance at every T.' in c.evidence


def test_adding_claim_averages_seeds_and_reads_the_chance_of_each_row():
  # seeds 0.3 and 0.9 of chance: mean 0.6 > AT_CHANCE; a different chance per row
  rows = [lr_row('adding', 'rnn', 50, 0.3, seed=0, chance=2.0),
          lr_row('adding', 'rnn', 50, 0.9, seed=1, chance=4.0),
          lr_row('adding', 'lstm', 50, 0.05, chance=2.0)]
  c = only(long_range.claims(rows), 'Adding problem')
  assert c.verdict == S and 'rnn T=50: 0.6' in c.evidence and 'lstm T=50: 0.05' in c.evidence
  rows[1] = lr_row('adding', 'rnn', 50, 0.6, seed=1, chance=4.0)   # mean 0.45
  assert only(long_range.claims(rows), 'Adding problem').verdict == P


def test_adding_claim_without_rnn_rows_is_not_supported_for_the_rnn():
  c = only(long_range.claims([lr_row('adding', 'lstm', 50, 0.01)]), 'Adding problem')
  assert c.verdict == P and 'the rnn stays near chance' in c.evidence


@pytest.mark.parametrize('ratios, want', [
    ({'rnn': 0.99, 'lstm': 0.9, 'gru': 0.6}, S),
    ({'rnn': 0.99, 'lstm': 0.1, 'gru': 0.6}, P),
    ({'rnn': 0.3, 'lstm': 0.1, 'gru': 0.01}, N),
])
def test_copy_claim_reads_the_longest_t(ratios, want):
  rows = [lr_row('copy', m, 500, v, chance=0.04) for m, v in ratios.items()]
  # at the shorter T every model solved it: must not count
  rows += [lr_row('copy', m, 100, 0.01, chance=0.1) for m in ratios]
  c = only(long_range.claims(rows), 'Copy memory')
  assert c.verdict == want and 'longest T (500)' in c.text


@pytest.mark.parametrize('att, rnn, lstm, want', [
    (0.05, 0.99, 0.8, S),
    (0.2, 0.99, 0.8, P),      # attention not solved
    (0.05, 0.99, 0.3, P),     # the lstm learned it
    (None, 0.4, 0.3, N),      # no transformer row at all
])
def test_recall_claim(att, rnn, lstm, want):
  rows = [lr_row('recall', 'rnn', 200, rnn, chance=math.log(8)),
          lr_row('recall', 'lstm', 200, lstm, chance=math.log(8)),
          lr_row('recall', 'rnn', 20, 0.01, chance=math.log(8))]   # shorter T ignored
  if att is not None:
    rows.append(lr_row('recall', 'transformer', 200, att, chance=math.log(8)))
  assert only(long_range.claims(rows), 'First-token recall').verdict == want


def test_long_range_claims_only_for_tasks_that_ran():
  assert [c.text.split(':')[0] for c in long_range.claims([lr_row('copy', 'rnn', 10, 0.9)])] \
      == ['Copy memory at the longest T (10)']


# ----------------------------------------------------------------------------- grad_flow
def rho_rows(rates):
  return [dict(sweep='rho', phase='init', model='rnn', seq_len=64, seed=s, spectral_radius=rho,
               decay_rate_per_step=r) for rho, rs in rates.items() for s, r in enumerate(rs)]


@pytest.mark.parametrize('rates, want', [
    ({0.5: [-0.8, -0.9], 0.9: [-0.2, -0.2], 1.0: [-0.05, -0.05]}, S),
    ({0.5: [-0.69, -0.69], 0.9: [-0.1, -0.11], 1.0: [0.0, 0.0]}, S),   # within 0.01 of log rho
    ({0.5: [-0.5, -0.5], 0.9: [-0.2, -0.2], 1.0: [-0.05, -0.05]}, P),  # slower than log 0.5
    ({0.5: [-0.8, -0.8], 0.9: [-0.9, -0.9], 1.0: [-0.05, -0.05]}, P),  # not monotone in rho
    ({0.5: [-0.1, -0.1], 0.9: [-0.8, -0.8], 1.0: [0.5, 0.5]}, N),
])
def test_rho_claim(rates, want):
  c = only(grad_flow.claims(rho_rows(rates)), 'spectral radius')
  assert c.verdict == want, c.evidence


def init_rows(rates, t=128):
  return [dict(sweep='models', phase='init', model=m, seq_len=tt, seed=0,
               decay_rate_per_step=r if tt == t else 0.0, grad_norm_first=1e-3)
          for m, r in rates.items() for tt in (t // 2, t)]


@pytest.mark.parametrize('rates, want', [
    ({'rnn': -0.3, 'lstm': -0.05, 'gru': -0.2}, S),
    ({'rnn': -0.3, 'lstm': -0.05, 'gru': -0.4}, P),
    ({'rnn': -0.3, 'lstm': -0.3, 'gru': -0.4}, N),     # equal is not slower
])
def test_gating_claim_at_the_longest_t(rates, want):
  c = only(grad_flow.claims(init_rows(rates)), 'Gating')
  assert c.verdict == want and 'T=128' in c.text


@pytest.mark.parametrize('rate, want', [(-0.005, S), (0.009, S), (-0.02, N), (0.011, N)])
def test_transformer_flat_claim(rate, want):
  c = only(grad_flow.claims(init_rows({'transformer': rate})), 'short path')
  assert c.verdict == want
  assert not [x for x in grad_flow.claims(init_rows({'transformer': rate})) if 'Gating' in x.text]


# ---------------------------------------------------------------------------------- text
def text_row(task, model, **kw):
  return dict(task=task, model=model, seq_len=64, seed=0, **kw)


@pytest.mark.parametrize('rows, want', [
    ([text_row('charlm', 'lstm', final_loss=2.0, chance_loss=3.0),
      text_row('textclf', 'lstm', final_accuracy=0.6, majority_accuracy=0.4)], S),
    ([text_row('charlm', 'lstm', final_loss=3.5, chance_loss=3.0),     # worse than unigram
      text_row('textclf', 'lstm', final_accuracy=0.6, majority_accuracy=0.4)], P),
    ([text_row('charlm', 'lstm', final_loss=3.0, chance_loss=3.0),     # equal does not beat
      text_row('listops', 'gru', final_accuracy=0.4, majority_accuracy=0.4)], N),
    ([text_row('listops', 'gru', final_accuracy=0.2, majority_accuracy=0.4)], N),
])
def test_text_claim(rows, want):
  (c,) = text.claims(rows)
  assert c.verdict == want


def test_text_claim_skips_points_without_a_score_and_reports_bits():
  rows = [text_row('charlm', 'lstm', final_loss=None, chance_loss=3.0),   # diverged
          text_row('textclf', 'gru', final_accuracy=0.7, majority_accuracy=None),
          text_row('charlm', 'gru', final_loss=math.log(2), chance_loss=2 * math.log(2))]
  (c,) = text.claims(rows)
  assert c.verdict == S and '1 of 1 points' in c.evidence
  assert 'gru/charlm/T=64 1.000 vs 2.000' in c.evidence   # nats -> bits
  assert text.claims(rows[:2]) == []


# ---------------------------------------------------------------------------- throughput
def tp_rows(slopes, ts=(64, 128, 256)):
  return [dict(model=m, seq_len=t, status='ok', step_ms=float(t) ** k)
          for m, k in slopes.items() for t in ts]


@pytest.mark.parametrize('slopes, want', [
    ({'lstm': 1.0, 'gru:fused': 1.1, 'attention:einsum': 1.8}, S),
    ({'lstm': 1.0, 'gru:fused': 1.9, 'attention:einsum': 1.8}, N),
    ({'rnn': 1.0, 'attention:blocked': 0.9, 'attention:einsum': 1.5}, S),  # max over attention
])
def test_throughput_slope_claim(slopes, want):
  c = only(throughput.claims(tp_rows(slopes)), 'O(T^2)')
  assert c.verdict == want
  for m, k in slopes.items():
    assert f'{m} {k:.2f}' in c.evidence


def test_throughput_slope_claim_ignores_failed_points_and_lone_models():
  rows = tp_rows({'lstm': 1.0, 'attention:einsum': 2.0})
  rows.append(dict(model='lstm', seq_len=512, status='timeout', step_ms=1e9))
  rows.append(dict(model='gru', seq_len=64, status='ok', step_ms=1e9))   # one point: no slope
  c = only(throughput.claims(rows), 'O(T^2)')
  assert c.verdict == S and 'gru' not in c.evidence
  assert throughput.claims(tp_rows({'lstm': 1.0})) == []    # no attention: no claim


@pytest.mark.parametrize('ratios, want', [
    ({64: 1.5, 256: 1.35}, S), ({64: 1.5, 256: 1.34}, P), ({64: 1.0, 256: 1.2}, N)])
def test_fused_lstm_claim(ratios, want):
  rows = [dict(model='lstm:fused', seq_len=t, status='ok', step_ms=1.0,
               ratio_train_vs_flax_lstm=v) for t, v in ratios.items()]
  rows.append(dict(model='lstm', seq_len=64, status='ok', step_ms=1.0,
                   ratio_train_vs_flax_lstm=0.1))     # the reference kernel is not the claim
  c = only(throughput.claims(rows), 'fused LSTM')
  assert c.verdict == want


# ------------------------------------------------------------------------------- impulse
def test_impulse_claim_is_measured_at_the_longest_t_mean_over_seeds():
  rows = [dict(model='lru', seq_len=8, seed=0, impulse_response=[1.0] * 7 + [0.5]),
          dict(model='lru', seq_len=8, seed=1, impulse_response=[1.0] * 7 + [0.3]),
          dict(model='lru', seq_len=4, seed=0, impulse_response=[1.0, 1.0, 1.0, 0.9]),
          dict(model='rnn', seq_len=8, seed=0, impulse_response=[1.0] * 7 + [0.01])]
  (c,) = impulse.claims(rows)
  assert c.verdict == study.MEASURED
  assert 'T=8' in c.evidence and 'lru 0.4' in c.evidence and 'rnn 0.01' in c.evidence


def test_adding_claim_judges_the_transformer_too():
  rows = [lr_row('adding', 'rnn', 50, 0.9), lr_row('adding', 'lstm', 50, 0.01),
          lr_row('adding', 'transformer', 50, 0.5)]
  c = only(long_range.claims(rows), 'Adding problem')
  assert c.verdict == P and 'Does not hold: transformer solves it at every T.' in c.evidence


def test_adding_claim_thresholds_are_strict():
  """Exactly AT_CHANCE is not 'near chance'; exactly SOLVED_FRACTION is not solved."""
  at = [lr_row('adding', 'rnn', 50, long_range.AT_CHANCE, chance=1.0),
        lr_row('adding', 'lstm', 50, long_range.SOLVED_FRACTION, chance=1.0)]
  assert only(long_range.claims(at), 'Adding problem').verdict == N
