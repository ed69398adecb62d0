"""Every claim of the grad_flow, impulse, text, throughput, generation, length_gen and
recall_capacity studies, on made-up rows shaped as each study's rows() returns them: each
part driven to hold, to fail and to be undecided (its interval straddling the threshold),
and each other branch its code has (a missing model or run, a diverged or timed-out point,
a NaN number). Pure Python, no training. The statistics and the verdict rule are in
test_study.py; the long_range and paper claims in test_long_range.py and test_paper.py."""
import math

import numpy as np
import pytest

from seqlab.studies import generation, grad_flow, impulse, length_gen, stats, study, text
from seqlab.studies import recall_capacity as rc
from seqlab.studies import throughput

H, F, U = stats.HOLDS, stats.FAILS, stats.UNDECIDED
S, P, N, UND, M = (study.SUPPORTED, study.PARTLY, study.NOT_SUPPORTED, study.UNDECIDED,
                   study.MEASURED)


def only(claims, words):
  found = [c for c in claims if words in c.text]
  assert len(found) == 1, [c.text for c in claims]
  return found[0]


def none_of(claims, words):
  return not [c for c in claims if words in c.text]


def part(c, words):
  """The one part of claim c whose name contains `words`."""
  found = [p for p in c.parts if words in p.name]
  assert len(found) == 1, [p.name for p in c.parts]
  return found[0]


def spread(center, width, n=3):
  """n seed values centred on `center`, spread over +-width."""
  return list(np.linspace(center - width, center + width, n))


@pytest.mark.parametrize('module', [grad_flow, impulse, text, throughput, generation,
                                    length_gen, rc])
def test_no_rows_no_claim(module):
  assert module.claims([]) == []


# ----------------------------------------------------------------------------- grad_flow
def rho_rows(rates, t=64):
  return [dict(sweep='rho', phase='init', model='rnn', seq_len=t, seed=s, spectral_radius=rho,
               decay_rate_per_step=r) for rho, rs in rates.items() for s, r in enumerate(rs)]


def test_rho_claim_holds_fails_and_is_undecided():
  tight = {0.5: spread(-0.8, 0.01), 0.9: spread(-0.2, 0.01), 1.0: spread(-0.05, 0.01)}
  c = only(grad_flow.claims(rho_rows(tight)), 'spectral radius')
  assert c.verdict == S and all(p.outcome == H for p in c.parts)
  assert '[' in part(c, 'log rho + 0.01 at rho=0.5').estimate     # the number has its interval
  # above log 0.5 + TOL with a tight interval: fails; with a wide one: undecided
  c = only(grad_flow.claims(rho_rows({**tight, 0.5: spread(-0.5, 0.01)})), 'spectral radius')
  assert part(c, 'at or below log rho + 0.01 at rho=0.5').outcome == F and c.verdict == P
  c = only(grad_flow.claims(rho_rows({**tight, 0.5: spread(-0.68, 0.2)})), 'spectral radius')
  p = part(c, 'at or below log rho + 0.01 at rho=0.5')
  assert p.outcome == U and 'seeds would decide it' in p.note and c.verdict == UND
  # not monotone: faster at 0.9 than at 0.5 fails that step
  c = only(grad_flow.claims(rho_rows({**tight, 0.9: spread(-0.95, 0.01)})), 'spectral radius')
  assert part(c, 'not faster at rho=0.9 than at rho=0.5').outcome == F
  # the same rate at every rho is not a rate set by rho
  same = {rho: spread(-0.8, 0.001) for rho in (0.5, 0.9, 1.0)}
  c = only(grad_flow.claims(rho_rows(same)), 'spectral radius')
  assert part(c, 'slower at rho=1 than at rho=0.5').outcome == F


def test_rho_claim_needs_two_rhos_and_finite_rates():
  c = only(grad_flow.claims(rho_rows({0.5: spread(-0.8, 0.01)})), 'spectral radius')
  assert part(c, 'slower as rho grows').outcome == F                # one rho: nothing grows
  c = only(grad_flow.claims(rho_rows({0.5: [None, float('nan')], 0.9: spread(-0.2, 0.01)})),
           'spectral radius')
  assert part(c, 'log rho + 0.01 at rho=0.5').outcome == F         # no finite rate


def init_rows(rates, ts=(16, 128), n=3, width=0.005):
  """Init rows: rates[m] is one rate (every T) or {T: rate}; None: not measured."""
  out = []
  for m, r in rates.items():
    for t in ts:
      v = r.get(t) if isinstance(r, dict) else r
      if v is None:
        continue
      out += [dict(sweep='models', phase='init', model=m, seq_len=t, seed=s,
                   decay_rate_per_step=x, grad_norm_first=1e-3)
              for s, x in enumerate(spread(v, width, n))]
  return out


def test_gating_claim_is_read_at_every_t():
  c = only(grad_flow.claims(init_rows({'rnn': -0.3, 'lstm': -0.05, 'gru': -0.2})), 'Gating')
  assert c.verdict == S and {p.name for p in c.parts} == {
      f'{m} decays slower than the rnn at T={t}' for m in ('lstm', 'gru') for t in (16, 128)}
  # the lstm slower at T=128 but faster at T=16: the claim is read at both, so it fails there
  rows = init_rows({'rnn': -0.3, 'lstm': {16: -0.4, 128: -0.05}, 'gru': -0.2})
  c = only(grad_flow.claims(rows), 'Gating')
  assert part(c, 'lstm decays slower than the rnn at T=16').outcome == F
  assert part(c, 'lstm decays slower than the rnn at T=128').outcome == H and c.verdict == P
  # a difference smaller than the seeds' spread is undecided
  rows = init_rows({'rnn': -0.3, 'lstm': -0.29, 'gru': -0.2}, width=0.05)
  assert part(only(grad_flow.claims(rows), 'Gating'),
              'lstm decays slower than the rnn at T=16').outcome == U
  # the gru never measured: its parts fail (both cells are named in the claim)
  c = only(grad_flow.claims(init_rows({'rnn': -0.3, 'lstm': -0.05})), 'Gating')
  assert part(c, 'gru decays slower than the rnn at T=128').outcome == F and c.verdict == P
  assert none_of(grad_flow.claims(init_rows({'lstm': -0.05, 'gru': -0.2})), 'Gating')


def test_gating_claim_writes_underflow_as_zero():
  rows = init_rows({'rnn': -0.3, 'gru': -0.2})
  for r in rows:
    if r['model'] == 'gru':
      r['grad_norm_first'] = 0.0
  c = only(grad_flow.claims(rows), 'Gating')
  assert 'gru 0' in c.evidence and '1e-45' not in c.evidence


def test_transformer_flat_claim_at_every_t():
  # rate x (T - 1) within +-ln 2: flat; the rate 0.01 is flat at T=16 (0.15) and not at 128
  c = only(grad_flow.claims(init_rows({'transformer': 0.001, 'rnn': -0.3}, width=0.0005)),
           'short path')
  assert c.verdict == S
  c = only(grad_flow.claims(init_rows({'transformer': 0.01, 'rnn': -0.3}, width=0.0005)),
           'short path')
  assert part(c, 'T=16').outcome == H and part(c, 'T=128').outcome == F and c.verdict == P
  c = only(grad_flow.claims(init_rows({'transformer': 0.004, 'rnn': -0.3}, width=0.01)),
           'short path')
  assert part(c, 'T=128').outcome == U
  assert none_of(grad_flow.claims(init_rows({'rnn': -0.3})), 'short path')


def test_never_left_chance_reads_the_curve_digest():
  r = dict(chance_loss=1.0, train_curve={'step': [1, 2, 3], 'loss': [1.0, 0.95, 0.97],
                                         'grad_norm': [1, 1, 1]})
  assert grad_flow.never_left_chance(r)
  r['train_curve']['loss'] = [1.0, 0.5, 0.2]
  assert not grad_flow.never_left_chance(r)


# ------------------------------------------------------------------------------- impulse
def imp(model, t, end, seed=0):
  return dict(model=model, seq_len=t, seed=seed, impulse_response=[1.0] * (t - 1) + [end])


def test_impulse_claim_is_measured_with_intervals_and_says_what_attention_does():
  rows = [imp('lru', 8, 0.5), imp('lru', 8, 0.3, seed=1), imp('lru', 4, 0.9),
          imp('rnn', 8, 0.0), imp('transformer', 8, 0.1)]
  (c,) = impulse.claims(rows)
  assert c.verdict == M and c.parts == ()
  assert 'T=8' in c.evidence and 'lru 0.4 [' in c.evidence and 'rnn 0,' in c.evidence
  assert 'no state to echo' not in c.text and 'log-log slope' in c.evidence
  (c,) = impulse.claims([imp('lru', 8, 0.5), imp('transformer', 4, 0.2)])
  assert c.evidence.endswith('Not measured at T=8: transformer.')


def test_power_slope_is_minus_one_for_one_over_t():
  t = np.arange(1, 64)
  assert impulse.power_slope([1.0] + list(1.0 / t)) == pytest.approx(-1.0)


# ---------------------------------------------------------------------------------- text
def text_row(task, model, seed=0, diverged_at_step=None, **kw):
  return dict(task=task, model=model, seq_len=64, seed=seed, diverged_at_step=diverged_at_step,
              eval_examples=500, **kw)


def lm(model, loss, chance=3.0, se=0.01, **kw):
  return text_row('charlm', model, final_loss=loss, final_loss_se=se, chance_loss=chance, **kw)


def clf(task, model, acc, majority=0.4, se=0.01, **kw):
  return text_row(task, model, final_accuracy=acc, final_accuracy_se=se,
                  majority_accuracy=majority, **kw)


def test_text_claim_holds_fails_and_is_undecided():
  (c,) = text.claims([lm('lstm', 2.0), clf('textclf', 'lstm', 0.6)])
  assert c.verdict == S
  (c,) = text.claims([lm('lstm', 3.5), clf('textclf', 'lstm', 0.6)])
  assert part(c, 'on charlm').outcome == F and c.verdict == P
  # within the interval of the baseline: undecided (one seed: its eval-sampling error)
  (c,) = text.claims([lm('lstm', 2.99, se=0.05), clf('listops', 'gru', 0.41, se=0.02)])
  assert part(c, 'charlm').outcome == U and part(c, 'listops').outcome == U
  assert c.verdict == UND
  # seeds are pooled: one point per (task, T, model)
  (c,) = text.claims([lm('lstm', 2.0), lm('lstm', 2.1, seed=1)])
  assert len(c.parts) == 1 and '2 seed(s)' in c.evidence


def test_text_claim_diverged_or_no_baseline_fails_and_bits_are_bits():
  (c,) = text.claims([lm('lstm', None, diverged_at_step=7), clf('textclf', 'gru', 0.7,
                                                               majority=None)])
  assert part(c, 'charlm').outcome == F and part(c, 'textclf').outcome == F
  assert 'no baseline' in part(c, 'textclf').note and c.verdict == N
  (c,) = text.claims([lm('gru', math.log(2), chance=2 * math.log(2), se=0.0)])
  assert part(c, 'charlm').estimate == '1' and part(c, 'charlm').rule == '< 2.000 bits/char'
  assert text.table([lm('gru', math.log(2))]).count('|') > 8


# ---------------------------------------------------------------------------- throughput
def tp_rows(slopes, ts=(64, 128, 256), noise=0.01, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for m, k in slopes.items():
    for t in ts:
      ms = float(t) ** k
      out.append(dict(model=m, seq_len=t, batch=8, status='ok', step_ms=ms,
                      step_ms_samples=list(ms * (1 + noise * rng.standard_normal(10)))))
  return out


def test_throughput_slope_claim():
  c = only(throughput.claims(tp_rows({'lstm': 1.0, 'gru:fused': 1.1, 'attention:einsum': 1.8})),
           'O(T^2)')
  assert c.verdict == S and len(c.parts) == 2 and 'bootstrap' in c.evidence
  c = only(throughput.claims(tp_rows({'rnn': 1.0, 'attention:blocked': 0.9,
                                      'attention:einsum': 1.5})), 'O(T^2)')
  assert part(c, 'attention:blocked steeper than rnn').outcome == F and c.verdict == P
  # noisy timings and a small difference: undecided
  c = only(throughput.claims(tp_rows({'lstm': 1.0, 'attention:einsum': 1.03}, noise=0.3)),
           'O(T^2)')
  assert part(c, 'attention:einsum steeper than lstm').outcome == U
  # baselines are not seqlab's layers; names with a dtype or a split still count
  c = only(throughput.claims(tp_rows({'lstm/bfloat16': 1.0, 'flax_lstm': 2.5,
                                      'attention:blocked@2': 1.9})), 'O(T^2)')
  assert [p.name for p in c.parts] == ['attention:blocked@2 steeper than lstm/bfloat16']


def test_throughput_slope_claim_names_failed_points():
  rows = tp_rows({'lstm': 1.0, 'attention:einsum': 2.0})
  rows.append(dict(model='lstm', seq_len=512, batch=8, status='timeout', step_ms=1e9))
  c = only(throughput.claims(rows), 'O(T^2)')
  assert 'Not finished, left out of the slopes: lstm T=512 timeout.' in c.evidence
  assert throughput.claims(tp_rows({'lstm': 1.0})) == []


def fused_rows(speedups, noise=0.01, unfinished=None):
  rng = np.random.default_rng(0)
  rows = []
  for t, v in speedups.items():
    for m, ms in (('flax_lstm', 10.0), ('lstm:fused', 10.0 / v)):
      rows.append(dict(model=m, seq_len=t, batch=8, status='ok', step_ms=ms,
                       step_ms_samples=list(ms * (1 + noise * rng.standard_normal(10)))))
  rows += [dict(model='lstm:fused', seq_len=t, batch=8, status=s)
           for t, s in (unfinished or {}).items()]
  return rows


def test_fused_lstm_claim():
  c = only(throughput.claims(fused_rows({64: 1.6, 256: 1.5})), 'fused LSTM')
  assert c.verdict == S and part(c, 'T=64').estimate.startswith('1.6')
  c = only(throughput.claims(fused_rows({64: 1.6, 256: 1.2})), 'fused LSTM')
  assert part(c, 'T=256').outcome == F and c.verdict == P
  c = only(throughput.claims(fused_rows({64: 1.36}, noise=0.2)), 'fused LSTM')
  assert part(c, 'T=64').outcome == U
  c = only(throughput.claims(fused_rows({64: 1.6}, unfinished={1024: 'timeout'})), 'fused LSTM')
  assert part(c, 'T=1024').outcome == F and part(c, 'T=1024').note == 'timeout'
  assert none_of(throughput.claims([r for r in fused_rows({64: 1.5})
                                    if r['model'] != 'flax_lstm']), 'fused LSTM')


def test_device_target_claims_read_bfloat16_at_1024_and_8192():
  rows = []
  for t in (1024, 8192):
    for m, ms in (('torch_lstm/bfloat16', 10.0), ('lstm:cudnn/bfloat16', 8.0),
                  ('lstm:fused/bfloat16', 20.0)):
      rows.append(dict(model=m, seq_len=t, batch=8, status='ok', step_ms=ms,
                       step_ms_samples=[ms] * 9 + [ms * 1.001]))
  c = only(throughput.claims(rows), 'fastest lstm kernel')
  assert c.verdict == S and part(c, 'T=1024').name.startswith('lstm:cudnn')
  c = only(throughput.claims([r for r in rows if r['seq_len'] == 1024]), 'fastest lstm kernel')
  assert part(c, 'T=8192').outcome == F and part(c, 'T=8192').note == 'not measured'


# ---------------------------------------------------------------------------- generation
CONTEXTS = (256, 1024, 4096, 16384)


def gen_rows(slopes, batch=1, state=None, timeouts=(), noise=0.01):
  rng = np.random.default_rng(1)
  out = []
  for m, slope in slopes.items():
    for i, l in enumerate(CONTEXTS):
      if (m, l) in timeouts:
        out.append(dict(model=m, batch=batch, seq_len=l, status='timeout', error='slow'))
        continue
      ms = (l / 256) ** slope
      sizes = (state or {}).get(m) or [l if m.startswith('transformer') else 64] * 4
      out.append(dict(model=m, batch=batch, seq_len=l, status='ok', decode_ms_per_token=ms,
                      decode_ms_samples=list(ms * (1 + noise * rng.standard_normal(16))),
                      tokens_per_s=batch * 1e3 / ms, state_bytes_per_sequence=sizes[i]))
  return out


def test_generation_claim():
  (c,) = generation.claims(gen_rows({'lstm': 0.0, 'gru': 0.1, 'transformer': 1.0}))
  assert c.verdict == S
  (c,) = generation.claims(gen_rows({'lstm': 0.5, 'transformer': 1.0}))
  assert part(c, 'lstm per-token cost flat').outcome == F and c.verdict == P
  (c,) = generation.claims(gen_rows({'lstm': 0.24, 'transformer': 1.0}, noise=0.3))
  assert part(c, 'lstm per-token cost flat').outcome == U
  (c,) = generation.claims(gen_rows({'lstm': 0.0, 'transformer': 1.0},
                                    state={'lstm': [64, 64, 128, 128]}))
  assert part(c, 'lstm state size constant').outcome == F
  (c,) = generation.claims(gen_rows({'lstm': 0.0, 'transformer': 1.0},
                                    state={'transformer': [64, 128, 64, 128]}))
  assert part(c, 'transformer cache grows').outcome == F


def test_generation_claim_timeouts_batches_and_crossover():
  (c,) = generation.claims(gen_rows({'lstm': 0.0, 'transformer': 1.0},
                                    timeouts={('lstm', 16384)}))
  assert part(c, 'lstm per-token cost flat').outcome == F
  assert 'timed out at L = 16384' in part(c, 'lstm per-token cost flat').note
  rows = (gen_rows({'lstm': 0.0, 'transformer': 1.0, generation.decoding.RERUN: 1.0},
                   state={generation.decoding.RERUN: [0] * 4}) +
          gen_rows({'lstm': 0.5, 'transformer': 1.0}, batch=32))
  c1, c32 = generation.claims(rows)
  assert 'batch 1' in c1.text and c1.verdict == S and 'rerun' not in str(c1.parts)
  assert 'batch 32' in c32.text and c32.verdict == P
  assert 'already at L = 256' in c1.evidence
  assert generation.claims(gen_rows({'transformer': 1.0})) == []


# ---------------------------------------------------------------------------- length_gen
def lg(task, model, ratios, valid=None, chance=1.0, seed=0, se=0.001):
  """A results line: loss/chance `ratios` at T, 2T, 4T (str: the reason a length was not
  run; None: not finite); valid: the VALID loss / chance at T (default: the EVAL one)."""
  evals = [dict(multiplier=m, seq_len=8 * m, reason=v) if isinstance(v, str) else
           dict(multiplier=m, seq_len=8 * m, loss=None if v is None else v * chance,
                loss_se=se * chance, examples=1000, chance=chance)
           for m, v in zip((1, 2, 4), ratios or ())]
  v = valid if valid is not None else (ratios[0] if ratios else None)
  return dict(task=task, model=model, seq_len=8, seed=seed, evals=evals, chance_loss=chance,
              valid_loss=None if v is None else v * chance)


NO_POS = 'no learned position beyond 9 (built for the training length); length 16 needs 17'
PAST = 'kback held-out data has at most 16 tokens'


def test_recurrent_claim_holds_fails_and_is_undecided():
  rows = [lg('kback', 'lstm', (0.01, 0.015, 0.05)), lg('kback', 'gru', (0.2, 0.25, 0.3)),
          lg('copy', 'gru', (0.95, 0.99, 0.99))]       # not learned at T: not judged
  c = only(length_gen.claims(rows), 'Recurrent models keep')
  assert c.verdict == S and 'Not learned at T, so not judged: gru: copy' in c.evidence
  rows[0] = lg('kback', 'lstm', (0.01, 0.015, 0.5))     # lost by 4T
  c = only(length_gen.claims(rows), 'Recurrent models keep')
  assert part(c, 'lstm keeps').outcome == F and c.verdict == P
  rows[0] = lg('kback', 'lstm', (0.01, 0.015, 0.11), se=0.02)   # 0.11 +- 0.04 vs 0.11
  assert part(only(length_gen.claims(rows), 'Recurrent'), 'lstm keeps').outcome == U
  rows[0] = lg('kback', 'lstm', (0.01, 0.015, None))    # not finite at 4T
  assert part(only(length_gen.claims(rows), 'Recurrent'), 'lstm keeps').outcome == F


def test_learned_at_t_is_decided_on_valid_not_on_the_reported_eval():
  # EVAL says learned (0.1), VALID says not (0.9): not judged
  rows = [lg('kback', 'lstm', (0.1, 0.9, 0.9), valid=0.9)]
  c = only(length_gen.claims(rows), 'Recurrent')
  assert c.parts == () and c.verdict == N and 'lstm: kback' in c.evidence
  # nothing evaluated beyond T: the part fails, saying so
  c = only(length_gen.claims([lg('kback', 'lstm', (0.01, PAST, PAST))]), 'Recurrent')
  assert part(c, 'lstm keeps').outcome == F and 'not evaluated beyond T' in part(
      c, 'lstm keeps').note


def test_transformer_claim_has_no_part_the_code_makes_true():
  rows = [lg('kback', 'transformer', (0.01, 0.5, 1.5)),
          lg('kback', 'transformer+learned', (0.01, NO_POS, NO_POS))]
  c = only(length_gen.claims(rows), 'sinusoidal positions')
  assert c.verdict == S and [p.name for p in c.parts] == [
      'transformer (sinusoidal) degraded on kback at 4T']
  assert 'transformer+learned: no learned position exists' in c.evidence
  rows[0] = lg('kback', 'transformer', (0.01, 0.012, 0.015))   # kept: not degraded
  assert only(length_gen.claims(rows), 'sinusoidal').verdict == N
  rows[0] = lg('kback', 'transformer', (0.01, 1.5, PAST))      # the longest evaluated: 2T
  assert part(only(length_gen.claims(rows), 'sinusoidal'), 'at 2T').outcome == H
  assert none_of(length_gen.claims([lg('kback', 'transformer+learned', (0.01, NO_POS))]),
                 'sinusoidal')


def test_length_gen_table_says_one_seed_when_one_seed():
  table = length_gen.table([lg('kback', 'lstm', (0.01, 0.015, 0.05))])
  assert 'one seed' in table and 'mean over' not in table
  table = length_gen.table([lg('kback', 'lstm', (0.01, 0.015, 0.05)),
                            lg('kback', 'lstm', (0.02, 0.015, 0.05), seed=1)])
  assert 'mean over 2 seeds' in table


# ------------------------------------------------------------------------ recall_capacity
def mq(model, pairs, width, acc, lr=1e-2, loss=1.0, valid=None, seed=0, se=0.01):
  return dict(model=model, num_pairs=pairs, hidden=width, seq_len=16, seed=seed, lr=lr,
              final_loss=loss, valid_loss=loss if valid is None else valid,
              final_accuracy=acc, final_accuracy_se=None if acc is None else se,
              eval_examples=2048, state_bytes=rc.state_bytes(model, width, 2, 16))


def grid(accs, se=0.01):
  return rc.mark_best_lr([mq(m, p, d, a, se=se) for m, cells in accs.items()
                          for (p, d), a in cells.items()])


ATT_OK = {(2, 16): 0.99, (2, 32): 1.0, (8, 16): 0.95, (8, 32): 0.97}
LSTM_FALLS = {(2, 16): 0.9, (2, 32): 0.95, (8, 16): 0.3, (8, 32): 0.5}


def test_capacity_claim():
  c = only(rc.claims(grid({'transformer': ATT_OK, 'lstm': LSTM_FALLS})), 'Attention solves')
  assert c.verdict == S and len(c.parts) == 6
  c = only(rc.claims(grid({'transformer': {**ATT_OK, (8, 16): 0.6}, 'lstm': LSTM_FALLS})),
           'Attention solves')
  assert part(c, 'P=8, D=16').outcome == F and c.verdict == P
  c = only(rc.claims(grid({'transformer': {**ATT_OK, (8, 16): 0.91}, 'lstm': LSTM_FALLS},
                          se=0.02)), 'Attention solves')
  assert part(c, 'solves P=8, D=16').outcome == U
  # guessing 1/P at every P is not falling recall
  c = only(rc.claims(grid({'transformer': ATT_OK, 'lstm': {(2, 16): 0.5, (2, 32): 0.5,
                                                           (8, 16): 0.125, (8, 32): 0.125}})),
           'Attention solves')
  assert part(c, 'falls from P=2 to P=8 at D=16').outcome == F
  c = only(rc.claims(grid({'transformer': ATT_OK})), 'Attention solves')
  assert part(c, 'a recurrent model was run').outcome == F


def test_capacity_lr_is_chosen_on_valid_never_on_eval():
  rows = [mq('lstm', 2, 16, 0.9, lr=1e-3, loss=0.1, valid=0.9),   # best on EVAL ...
          mq('lstm', 2, 16, 0.6, lr=1e-2, loss=0.5, valid=0.2)]   # ... best on VALID
  assert [r['lr'] for r in rc.mark_best_lr(rows) if r['best_lr']] == [1e-2]
  assert rc.best(rc.mark_best_lr(rows))[('lstm', 2, 16)]['accuracy'].value == 0.6


def test_matching_state_claim_is_measured():
  rows = grid({'transformer': {(2, 16): 1.0, (8, 16): 0.2},
               'lstm': {(2, 16): 0.5, (2, 32): 0.97, (8, 16): 0.1}})
  c = only(rc.claims(rows), 'state size at which')
  assert c.verdict == M and 'lstm: P=2 512 B' in c.evidence
  assert 'none for P=8: attention did not learn it' in c.evidence
