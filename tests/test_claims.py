"""Every branch of every claim of the grad_flow, impulse, text, throughput, generation,
length_gen and recall_capacity studies, on made-up rows shaped as each study's rows()
returns them: each claim driven to 'supported', 'partly supported' (the evidence naming
the part that fails) and 'not supported', and each other branch its code has (a claim
left out without its rows, a missing model or run, a diverged or timed-out point, a NaN
number, a threshold's edge). Pure Python, no training. The verdict rule itself and the
long_range study's claims are in test_study.py and test_long_range.py."""
import math

import pytest

from seqlab.studies import generation, grad_flow, impulse, length_gen, study, text, throughput
from seqlab.studies import recall_capacity as rc

S, P, N, M = study.SUPPORTED, study.PARTLY, study.NOT_SUPPORTED, study.MEASURED


def only(claims, words):
  found = [c for c in claims if words in c.text]
  assert len(found) == 1, [c.text for c in claims]
  return found[0]


def none_of(claims, words):
  return not [c for c in claims if words in c.text]


def fails(c, *parts):
  """c's evidence names exactly these failed parts (in order); none: it names none."""
  if not parts:
    return 'Does not hold' not in c.evidence
  return c.evidence.endswith(f' Does not hold: {", ".join(parts)}.')


@pytest.mark.parametrize('module', [grad_flow, impulse, text, throughput, generation,
                                    length_gen, rc])
def test_no_rows_no_claim(module):
  assert module.claims([]) == []


# ----------------------------------------------------------------------------- grad_flow
def rho_rows(rates, t=64):
  return [dict(sweep='rho', phase='init', model='rnn', seq_len=t, seed=s, spectral_radius=rho,
               decay_rate_per_step=r) for rho, rs in rates.items() for s, r in enumerate(rs)]


BELOW, SLOWER = 'at or below log rho at every rho', 'slower decay as rho grows'


@pytest.mark.parametrize('rates, want, failed', [
    ({0.5: [-0.8, -0.9], 0.9: [-0.2, -0.2], 1.0: [-0.05, -0.05]}, S, ()),
    ({0.5: [-0.69, -0.69], 0.9: [-0.1, -0.11], 1.0: [0.0, 0.0]}, S, ()),   # within TOL of log rho
    ({0.5: [-0.5, -0.5], 0.9: [-0.2, -0.2], 1.0: [-0.05, -0.05]}, P, (BELOW,)),  # > log 0.5
    ({0.5: [-0.8, -0.8], 0.9: [-0.9, -0.9], 1.0: [-0.05, -0.05]}, P, (SLOWER,)),  # not monotone
    # the same rate at every rho is not a rate set by rho
    ({0.5: [-0.8, -0.8], 0.9: [-0.8, -0.8], 1.0: [-0.8, -0.8]}, P, (SLOWER,)),
    ({0.5: [-0.8], 0.9: [-0.795], 1.0: [-0.792]}, P, (SLOWER,)),   # rises by less than TOL
    ({0.5: [-0.1, -0.1], 0.9: [-0.8, -0.8], 1.0: [0.5, 0.5]}, N, (BELOW, SLOWER)),
    ({0.5: [None, float('nan')], 0.9: [-0.2], 1.0: [-0.05]}, N, (BELOW, SLOWER)),  # no rate
])
def test_rho_claim(rates, want, failed):
  c = only(grad_flow.claims(rho_rows(rates)), 'spectral radius')
  assert c.verdict == want and (fails(c, *failed))
  assert 'T=64' in c.evidence


def test_rho_claim_averages_seeds_and_needs_two_rhos():
  c = only(grad_flow.claims(rho_rows({0.5: [-0.5, -0.9]})), 'spectral radius')
  assert 'rho=0.5: -0.7000 vs -0.6931' in c.evidence     # mean of the seeds, below log 0.5
  assert c.verdict == P and fails(c, SLOWER)               # one rho: nothing grows
  assert none_of(grad_flow.claims(init_rows({'transformer': 0.0})), 'spectral radius')


def init_rows(rates, t=128, seeds=1):
  """Init rows at T and T/2; a model's rate at T is rates[m] (None: not measured at T)."""
  return [dict(sweep='models', phase='init', model=m, seq_len=tt, seed=s,
               decay_rate_per_step=r if tt == t else 0.0, grad_norm_first=1e-3)
          for m, r in rates.items() for tt in (t // 2, t) for s in range(seeds)
          if not (tt == t and r is None)]


LSTM_SLOWER, GRU_SLOWER = 'lstm decays slower than the rnn', 'gru decays slower than the rnn'


@pytest.mark.parametrize('rates, want, failed', [
    ({'rnn': -0.3, 'lstm': -0.05, 'gru': -0.2}, S, ()),
    ({'rnn': -0.3, 'lstm': -0.05, 'gru': -0.4}, P, (GRU_SLOWER,)),
    ({'rnn': -0.3, 'lstm': -0.3, 'gru': -0.4}, N, (LSTM_SLOWER, GRU_SLOWER)),   # equal: not slower
    ({'rnn': -0.3, 'lstm': -0.05}, P, (GRU_SLOWER,)),               # the gru not run: not shown
    ({'rnn': -0.3, 'lstm': None, 'gru': -0.2}, P, (LSTM_SLOWER,)),  # lstm only at T/2: nan at T
    ({'rnn': float('nan'), 'lstm': -0.05, 'gru': -0.2}, N, (LSTM_SLOWER, GRU_SLOWER)),
])
def test_gating_claim_at_the_longest_t(rates, want, failed):
  c = only(grad_flow.claims(init_rows(rates)), 'Gating')
  assert c.verdict == want and 'T=128' in c.text
  assert fails(c, *failed)
  if 'gru' not in rates:
    assert 'gru not measured' in c.evidence


def test_gating_claim_needs_the_rnn_and_a_gated_cell():
  assert none_of(grad_flow.claims(init_rows({'lstm': -0.05, 'gru': -0.2})), 'Gating')
  assert none_of(grad_flow.claims(init_rows({'rnn': -0.3, 'transformer': 0.0})), 'Gating')


@pytest.mark.parametrize('rate, want', [(-0.005, S), (0.009, S), (-0.02, N), (0.011, N),
                                        (grad_flow.FLAT, N), (float('nan'), N), (None, N)])
def test_transformer_flat_claim(rate, want):
  # None: the transformer measured only at T/2, the rnn at T (the longest)
  c = only(grad_flow.claims(init_rows({'transformer': rate, 'rnn': -0.3})), 'short path')
  assert c.verdict == want and 'T=128' in c.text
  if want == N:
    assert fails(c, 'the transformer is flat')
  assert none_of(grad_flow.claims(init_rows({'rnn': -0.3})), 'short path')


# ------------------------------------------------------------------------------- impulse
def imp(model, t, end, seed=0):
  return dict(model=model, seq_len=t, seed=seed, impulse_response=[1.0] * (t - 1) + [end])


def test_impulse_claim_is_measured_at_the_longest_t_mean_over_seeds():
  rows = [imp('lru', 8, 0.5), imp('lru', 8, 0.3, seed=1), imp('lru', 4, 0.9),
          imp('rnn', 8, 0.01)]
  (c,) = impulse.claims(rows)
  assert c.verdict == M and 'Does not hold' not in c.evidence
  assert 'T=8' in c.evidence and 'lru 0.4' in c.evidence and 'rnn 0.01' in c.evidence
  assert 'not measured' not in c.evidence


def test_impulse_claim_names_the_models_not_measured_at_the_longest_t():
  (c,) = impulse.claims([imp('lru', 8, 0.5), imp('transformer', 4, 0.2)])
  assert c.evidence.endswith('lru 0.5 (not measured at T=8: transformer).')


# ---------------------------------------------------------------------------------- text
def text_row(task, model, seed=0, diverged_at_step=None, **kw):
  return dict(task=task, model=model, seq_len=64, seed=seed, diverged_at_step=diverged_at_step,
              **kw)


def lm(model, loss, chance=3.0, **kw):
  return text_row('charlm', model, final_loss=loss, chance_loss=chance, **kw)


def clf(task, model, acc, majority=0.4, **kw):
  return text_row(task, model, final_accuracy=acc, majority_accuracy=majority, **kw)


@pytest.mark.parametrize('rows, want, failed', [
    ([lm('lstm', 2.0), clf('textclf', 'lstm', 0.6)], S, ()),
    ([lm('lstm', 3.5), clf('textclf', 'lstm', 0.6)], P, ('lstm/charlm/T=64/seed 0',)),
    ([lm('lstm', 3.0), clf('listops', 'gru', 0.4)],                  # equal does not beat
     N, ('lstm/charlm/T=64/seed 0', 'gru/listops/T=64/seed 0')),
    ([clf('listops', 'gru', 0.2)], N, ('gru/listops/T=64/seed 0',)),
    ([lm('lstm', 2.0), lm('lstm', 3.1, seed=1)], P, ('lstm/charlm/T=64/seed 1',)),
])
def test_text_claim(rows, want, failed):
  (c,) = text.claims(rows)
  assert c.verdict == want
  assert fails(c, *failed)


def test_text_claim_counts_a_diverged_point_or_one_without_a_baseline_as_not_beating():
  rows = [lm('lstm', None, diverged_at_step=7),
          clf('textclf', 'gru', 0.7, majority=None),
          lm('gru', math.log(2), chance=2 * math.log(2))]
  (c,) = text.claims(rows)
  assert c.verdict == P and fails(c, 'lstm/charlm/T=64/seed 0', 'gru/textclf/T=64/seed 0')
  assert '1 of 3 points' in c.evidence and 'lstm/charlm/T=64/seed 0 diverged' in c.evidence
  assert 'gru/textclf/T=64/seed 0 0.700 vs no baseline' in c.evidence
  assert 'gru/charlm/T=64/seed 0 1.000 vs 2.000' in c.evidence     # nats -> bits
  (c,) = text.claims(rows[:1])
  assert c.verdict == N and 'diverged' in c.evidence


def test_text_claim_names_only_the_tasks_run():
  (c,) = text.claims([lm('lstm', 2.0)])
  assert c.text.startswith('On charlm every model') and 'listops' not in c.text.split('(')[0]
  (c,) = text.claims([lm('lstm', 2.0), clf('listops', 'lstm', 0.6), clf('textclf', 'gru', 0.6)])
  assert c.text.startswith('On charlm, listops, textclf every model') and c.verdict == S


# ---------------------------------------------------------------------------- throughput
def tp_rows(slopes, ts=(64, 128, 256)):
  return [dict(model=m, seq_len=t, status='ok', step_ms=float(t) ** k)
          for m, k in slopes.items() for t in ts]


def steeper(m):
  return f'{m} grows faster than every recurrent layer'


@pytest.mark.parametrize('slopes, want, failed', [
    ({'lstm': 1.0, 'gru:fused': 1.1, 'attention:einsum': 1.8}, S, ()),
    ({'rnn': 1.0, 'attention:blocked': 0.9, 'attention:einsum': 1.5}, P,
     (steeper('attention:blocked'),)),              # every attention layer, not the steepest
    ({'lstm': 1.0, 'gru:fused': 1.9, 'attention:einsum': 1.8}, N, (steeper('attention:einsum'),)),
    ({'lstm': 1.5, 'attention:einsum': 1.5}, N, (steeper('attention:einsum'),)),   # equal
    # names with a dtype and a device split are still recurrent and attention layers
    ({'lstm/bfloat16': 1.0, 'attention:blocked@2': 1.9}, S, ()),
    # baselines are not seqlab's layers: neither counts
    ({'lstm': 1.0, 'flax_lstm': 2.5, 'jax_attention': 0.5, 'attention:blocked': 1.9}, S, ()),
])
def test_throughput_slope_claim(slopes, want, failed):
  c = only(throughput.claims(tp_rows(slopes)), 'O(T^2)')
  assert c.verdict == want
  assert fails(c, *failed)
  for m, k in slopes.items():
    if m in ('lstm', 'lstm/bfloat16', 'gru:fused', 'rnn') or m.startswith('attention'):
      assert f'{m} {k:.2f}' in c.evidence


def test_throughput_slope_claim_names_failed_points_and_skips_lone_ones():
  rows = tp_rows({'lstm': 1.0, 'attention:einsum': 2.0})
  rows.append(dict(model='lstm', seq_len=512, status='timeout', step_ms=1e9))
  rows.append(dict(model='gru', seq_len=64, status='ok', step_ms=1e9))   # one point: no slope
  c = only(throughput.claims(rows), 'O(T^2)')
  assert c.verdict == S and 'gru' not in c.evidence and 'T = 64, 128, 256:' in c.evidence
  assert 'Not finished, left out of the slopes: lstm T=512 timeout.' in c.evidence
  assert throughput.claims(tp_rows({'lstm': 1.0})) == []              # no attention: no claim
  assert throughput.claims(tp_rows({'attention:einsum': 2.0})) == []  # no recurrence: none


def fused_rows(ratios, status=None):
  rows = [dict(model='lstm:fused', seq_len=t, status='ok', step_ms=1.0,
               ratio_train_vs_flax_lstm=v) for t, v in ratios.items()]
  rows.append(dict(model='lstm', seq_len=64, status='ok', step_ms=1.0,
                   ratio_train_vs_flax_lstm=0.1))     # the reference kernel is not the claim
  rows += [dict(model='lstm:fused', seq_len=t, status=s) for t, s in (status or {}).items()]
  return rows


@pytest.mark.parametrize('ratios, unfinished, want, failed', [
    ({64: 1.5, 256: 1.35}, {}, S, ()),                        # the target itself is met
    ({64: 1.5, 256: 1.34}, {}, P, ('T=256',)),
    ({64: 1.0, 256: 1.2}, {}, N, ('T=64', 'T=256')),
    ({64: 1.5, 256: None}, {}, S, ()),          # no flax_lstm at T=256: no ratio, not judged
    ({64: 1.5}, {1024: 'timeout'}, P, ('T=1024 (timeout)',)),   # fused did not finish there
])
def test_fused_lstm_claim(ratios, unfinished, want, failed):
  c = only(throughput.claims(fused_rows(ratios, unfinished)), 'fused LSTM')
  assert c.verdict == want
  assert fails(c, *failed)
  assert none_of(throughput.claims(fused_rows({64: None})), 'fused LSTM')   # no flax: no claim


def device_rows(family, baseline, best_at, t_values=(1024, 8192)):
  """bfloat16 rows of two kernels of `family` at each T: the better one at best_at[t]."""
  key = f'ratio_train_vs_{baseline}'
  kernels = ('cudnn', 'fused') if family == 'lstm' else ('cudnn', 'blocked')
  rows = []
  for t in t_values:
    if t in best_at:
      rows.append(dict(model=f'{family}:{kernels[0]}/bfloat16', seq_len=t, status='ok',
                       step_ms=1.0, **{key: best_at[t]}))
      rows.append(dict(model=f'{family}:{kernels[1]}/bfloat16', seq_len=t, status='ok',
                       step_ms=1.0, **{key: best_at[t] / 2}))
  return rows


@pytest.mark.parametrize('family, baseline, best_at, want, failed', [
    ('lstm', 'torch_lstm', {1024: 1.2, 8192: 1.0}, S, ()),
    ('lstm', 'torch_lstm', {1024: 1.2, 8192: 0.8}, P, ('T=8192',)),
    ('lstm', 'torch_lstm', {1024: 1.2}, P, ('T=8192',)),      # 8192 not measured: not shown
    ('lstm', 'torch_lstm', {1024: 0.5, 8192: 0.8}, N, ('T=1024', 'T=8192')),
    ('attention', 'torch_sdpa', {1024: 0.9, 8192: 0.95}, S, ()),
    ('attention', 'torch_sdpa', {1024: 0.89, 8192: 0.95}, P, ('T=1024',)),
])
def test_device_target_claims(family, baseline, best_at, want, failed):
  c = only(throughput.claims(device_rows(family, baseline, best_at)), f'fastest {family} kernel')
  assert c.verdict == want
  assert fails(c, *failed)
  for t, v in best_at.items():
    assert f'T={t}: {v:.2f}x ({family}:cudnn)' in c.evidence    # the fastest kernel
  if 8192 not in best_at:
    assert 'T=8192: not measured' in c.evidence


def test_device_target_claims_read_only_bfloat16_at_1024_and_8192():
  rows = device_rows('lstm', 'torch_lstm', {1024: 0.5, 8192: 0.5})
  for r in rows:
    r['model'] = r['model'].replace('/bfloat16', '')      # float32: not the target's dtype
  rows += device_rows('lstm', 'torch_lstm', {4096: 2.0}, t_values=(4096,))   # another T
  assert none_of(throughput.claims(rows), 'fastest lstm kernel')


# ---------------------------------------------------------------------------- generation
CONTEXTS = (256, 1024, 4096, 16384)


def gen_rows(slopes, batch=1, state=None, timeouts=()):
  """Rows of per-token cost (L/256)^slope; state[m]: bytes by context (default: 64 for a
  recurrent model, L for a transformer); timeouts: (model, L) rows that timed out."""
  out = []
  for m, slope in slopes.items():
    for i, l in enumerate(CONTEXTS):
      if (m, l) in timeouts:
        out.append(dict(model=m, batch=batch, seq_len=l, status='timeout', error='slow'))
        continue
      ms = (l / 256) ** slope
      sizes = (state or {}).get(m) or [l if m.startswith('transformer') else 64] * 4
      out.append(dict(model=m, batch=batch, seq_len=l, status='ok', decode_ms_per_token=ms,
                      tokens_per_s=batch * 1e3 / ms, state_bytes_per_sequence=sizes[i]))
  return out


def flat(m):
  return f'{m} per-token cost flat (|slope| < {generation.FLAT})'


def grows(m):
  return f'{m} per-token cost grows with L (slope > {generation.LINEAR})'


@pytest.mark.parametrize('slopes, state, want, failed', [
    ({'lstm': 0.0, 'gru': 0.24, 'transformer': 1.0}, None, S, ()),
    ({'lstm': -0.24, 'transformer': 0.61}, None, S, ()),
    ({'lstm': 0.0, 'transformer': 0.1}, None, P, (grows('transformer'),)),
    ({'lstm': 0.26, 'transformer': 1.0}, None, P, (flat('lstm'),)),
    ({'lstm': -0.3, 'transformer': 1.0}, None, P, (flat('lstm'),)),      # |slope|
    ({'lstm': 0.0, 'transformer': 1.0}, {'lstm': [64, 64, 128, 128]}, P,
     ('lstm state size constant',)),
    ({'lstm': 0.0, 'transformer': 1.0}, {'transformer': [64] * 4}, P,
     ('transformer cache grows with L',)),
    # bytes that go up and down do not grow with L
    ({'lstm': 0.0, 'transformer': 1.0}, {'transformer': [64, 128, 64, 128]}, P,
     ('transformer cache grows with L',)),
    ({'lstm': 1.0, 'transformer': 0.0}, {'lstm': [1, 2, 3, 4], 'transformer': [64] * 4}, N,
     (flat('lstm'), grows('transformer'), 'lstm state size constant',
      'transformer cache grows with L')),
])
def test_generation_claim(slopes, state, want, failed):
  (c,) = generation.claims(gen_rows(slopes, state=state))
  assert c.verdict == want, c.evidence
  assert fails(c, *failed)
  assert 'batch 1' in c.text and 'L = 256, 1024, 4096, 16384' in c.evidence


def test_generation_claim_timeouts_and_missing_slopes():
  # a recurrent model that timed out at the longest context is not shown flat there
  rows = gen_rows({'lstm': 0.0, 'transformer': 1.0}, timeouts={('lstm', 16384)})
  (c,) = generation.claims(rows)
  assert c.verdict == P and fails(c, flat('lstm')) and 'lstm timed out at L = 16384.' in c.evidence
  # the transformer timing out at the longest context: its slope over the rest still grows
  (c,) = generation.claims(gen_rows({'lstm': 0.0, 'transformer': 1.0},
                                    timeouts={('transformer', 16384)}))
  assert c.verdict == S
  # one finished context: no slope (nan), not flat
  rows = gen_rows({'lstm': 0.0, 'transformer': 1.0},
                  timeouts={('lstm', 1024), ('lstm', 4096), ('lstm', 16384)})
  (c,) = generation.claims(rows)
  assert c.verdict == P and fails(c, flat('lstm')) and 'lstm +nan' in c.evidence


def test_generation_claim_per_batch_without_the_rerun_baseline():
  rows = (gen_rows({'lstm': 0.0, 'transformer': 1.0, generation.decoding.RERUN: 1.0},
                   state={generation.decoding.RERUN: [0] * 4}) +
          gen_rows({'lstm': 0.5, 'transformer': 1.0}, batch=32) +
          gen_rows({'lstm': 0.0}, batch=8))                   # no transformer: no claim
  c1, c32 = generation.claims(rows)
  assert 'batch 1' in c1.text and c1.verdict == S and 'rerun' not in c1.evidence
  assert 'batch 32' in c32.text and c32.verdict == P and fails(c32, flat('lstm'))
  assert generation.claims(gen_rows({'transformer': 1.0})) == []   # no recurrence: none


def test_generation_claim_says_where_the_transformer_becomes_slower():
  (c,) = generation.claims(gen_rows({'lstm': 0.0, 'transformer': 1.0}))
  assert 'already at L = 256' in c.evidence        # 1 ms/token each at 256: slower from there
  rows = gen_rows({'lstm': 0.0, 'transformer': 1.0})
  for r in rows:
    if r['model'] == 'transformer':
      r['decode_ms_per_token'], r['tokens_per_s'] = 1e-3, 1e6   # faster at every L
  assert 'at no context measured here.' in generation.claims(rows)[0].evidence
  rows = gen_rows({'lstm': 0.0, 'transformer': 1.0})
  for r in rows:
    if r['model'] == 'lstm':
      r['decode_ms_per_token'], r['tokens_per_s'] = 4.0, 250.0   # = transformer at L=1024
  assert 'L ~ 1,024.' in generation.claims(rows)[0].evidence


# ---------------------------------------------------------------------------- length_gen
def lg(task, model, ratios, chance=1.0, seed=0):
  """A results line: loss/chance `ratios` at T, 2T, 4T; a str is the reason a length was
  not run, None a loss that was not finite; ratios=None: the point diverged (no evals)."""
  evals = [dict(multiplier=m, seq_len=8 * m, reason=v) if isinstance(v, str) else
           dict(multiplier=m, seq_len=8 * m, loss=None if v is None else v * chance,
                chance=chance) for m, v in zip((1, 2, 4), ratios or ())]
  return dict(task=task, model=model, seq_len=8, seed=seed, evals=evals)


NO_POS = 'no learned position beyond 9 (built for the training length); length 16 needs 17'
PAST = 'kback held-out data has at most 16 tokens'
KEEPS = '{} keeps its loss on every task it learned at T'


@pytest.mark.parametrize('lstm, gru, want, failed', [
    ((0.01, 0.015, 0.05), (0.2, 0.25, 0.3), S, ()),      # kept: within max(2x, +0.1)
    ((0.3, 0.59, 0.6), (0.2, 0.25, 0.3), S, ()),         # 2 x 0.3 = 0.6 is still kept
    ((0.3, 0.59, 0.61), (0.2, 0.25, 0.3), P, ('lstm',)),
    ((0.01, 0.015, 0.5), (0.2, 0.25, 0.3), P, ('lstm',)),   # lstm loses it at 4T
    ((0.01, 0.015, None), (0.2, 0.25, 0.3), P, ('lstm',)),  # not finite at 4T: not kept
    ((0.01, 0.015, 0.02), (0.9, 0.9, 0.9), P, ('gru',)),    # the gru learned nothing at T
    ((0.01, 0.5, 0.9), (0.9, 0.9, 0.9), N, ('lstm', 'gru')),
])
def test_recurrent_claim(lstm, gru, want, failed):
  rows = [lg('kback', 'lstm', lstm), lg('kback', 'gru', gru),
          lg('copy', 'gru', (0.95, 0.99, 0.99))]    # not learned at T: not counted
  c = only(length_gen.claims(rows), 'Recurrent models keep')
  assert c.verdict == want, c.evidence
  assert fails(c, *[KEEPS.format(m) for m in failed])
  assert 'not learned at T: copy' in c.evidence
  if gru[0] >= length_gen.LEARNED:
    assert 'gru: learned no task at T' in c.evidence


def test_recurrent_claim_lengths_past_the_data_diverged_points_and_seeds():
  # past the task's held-out data is not evaluated, not a loss; the rest is kept
  c = only(length_gen.claims([lg('kback', 'lstm', (0.01, 0.015, PAST))]), 'Recurrent')
  assert c.verdict == S
  # nothing evaluated beyond T: keeping is not shown
  c = only(length_gen.claims([lg('kback', 'lstm', (0.01, PAST, PAST))]), 'Recurrent')
  assert c.verdict == N and fails(c, KEEPS.format('lstm'))
  # a diverged point has no evals: not learned at T, and said so
  rows = [lg('kback', 'lstm', (0.01, 0.015, 0.02)), lg('copy', 'lstm', None)]
  c = only(length_gen.claims(rows), 'Recurrent')
  assert c.verdict == S and 'not learned at T: copy' in c.evidence
  # learned at T is decided on the mean over seeds: 0.3 and 0.8 -> 0.55, not learned
  rows = [lg('kback', 'lstm', (0.3, 0.3, 0.3)), lg('kback', 'lstm', (0.8, 0.8, 0.8), seed=1)]
  c = only(length_gen.claims(rows), 'Recurrent')
  assert c.verdict == N and 'lstm: learned no task at T' in c.evidence
  assert none_of(length_gen.claims([lg('kback', 'transformer', (0.01, 0.5, 1.5))]), 'Recurrent')


LEARNED_PART = 'transformer+learned cannot run beyond T'
SIN_PART = 'transformer (sinusoidal) degrades beyond T on every task it learned at T'


@pytest.mark.parametrize('sinusoidal, learned, want, failed', [
    ((0.01, 0.5, 1.5), (0.01, NO_POS, NO_POS), S, ()),
    ((0.01, 0.5, None), (0.01, NO_POS, NO_POS), S, ()),          # not finite at 4T: degraded
    ((0.01, 0.5, 1.5), (0.01, NO_POS, PAST), S, ()),             # 4T past the data: left out
    ((0.01, 0.012, 0.015), (0.01, NO_POS, NO_POS), P, (SIN_PART,)),   # sinusoidal keeps it
    ((0.01, 1.5, 0.015), (0.01, NO_POS, NO_POS), P, (SIN_PART,)),     # judged at the longest
    ((0.01, 1.5, PAST), (0.01, NO_POS, NO_POS), S, ()),          # the longest evaluated: 2T
    ((0.01, PAST, PAST), (0.01, NO_POS, NO_POS), P, (SIN_PART,)),     # none beyond T
    ((0.9, 0.9, 0.9), (0.01, NO_POS, NO_POS), P, (SIN_PART,)),        # learned nothing at T
    ((0.01, 0.5, 1.5), (0.01, 0.02, 0.03), P, (LEARNED_PART,)),       # learned ran beyond T
    ((0.01, 0.5, 1.5), (0.01, PAST, PAST), P, (LEARNED_PART,)),       # refused for the data
    ((0.9, 0.9, 0.9), (0.01, 0.02, 0.03), N, (SIN_PART, LEARNED_PART)),
])
def test_transformer_claim(sinusoidal, learned, want, failed):
  rows = [lg('kback', 'transformer', sinusoidal), lg('kback', 'transformer+learned', learned)]
  c = only(length_gen.claims(rows), 'learned positions cannot run')
  assert c.verdict == want, c.evidence
  assert fails(c, *failed)


def test_transformer_claim_needs_both_position_kinds():
  learned = lg('kback', 'transformer+learned', (0.01, NO_POS, NO_POS))
  c = only(length_gen.claims([learned]), 'learned positions cannot run')
  assert c.verdict == P and fails(c, 'a transformer with sinusoidal positions was run')
  assert 'kback T 0.01, 2T not run, 4T not run' in c.evidence
  c = only(length_gen.claims([lg('kback', 'transformer', (0.01, 0.5, 1.5))]), 'learned positions')
  assert c.verdict == P and fails(c, 'a transformer with learned positions was run')
  c = only(length_gen.claims([lg('kback', 'transformer+learned', None)]), 'learned positions')
  assert c.verdict == N     # diverged: nothing refused beyond T; no sinusoidal one
  assert none_of(length_gen.claims([lg('kback', 'lstm', (0.01, 0.01, 0.01))]), 'transformer')


# ------------------------------------------------------------------------ recall_capacity
def mq(model, pairs, width, acc, lr=1e-2, loss=1.0, seed=0):
  return dict(model=model, num_pairs=pairs, hidden=width, seq_len=16, seed=seed, lr=lr,
              final_loss=loss, final_accuracy=acc,
              state_bytes=rc.state_bytes(model, width, 2, 16))


def grid(accs):
  """{model: {(P, D): accuracy}} -> rows, each at one lr, marked as rows() marks them."""
  return rc.mark_best_lr([mq(m, p, d, a) for m, cells in accs.items()
                          for (p, d), a in cells.items()])


ATT_OK = {(2, 16): 0.99, (2, 32): 1.0, (8, 16): 0.95, (8, 32): 0.97}
LSTM_FALLS = {(2, 16): 0.9, (2, 32): 0.95, (8, 16): 0.3, (8, 32): 0.5}
SOLVES = 'transformer solves every (P, D)'
LSTM_FALL = "lstm's recall falls from P=2 to P=8 at every width"


@pytest.mark.parametrize('att, lstm, want, failed', [
    (ATT_OK, LSTM_FALLS, S, ()),
    ({**ATT_OK, (8, 16): 0.9}, LSTM_FALLS, S, ()),                     # 0.9 is solved
    ({**ATT_OK, (8, 16): 0.6}, LSTM_FALLS, P, (SOLVES,)),             # attention misses a cell
    ({k: v for k, v in ATT_OK.items() if k != (8, 32)}, LSTM_FALLS, P, (SOLVES,)),  # not run
    (ATT_OK, {**LSTM_FALLS, (8, 32): 0.93}, P, (LSTM_FALL,)),         # lstm holds at D=32
    (ATT_OK, {**LSTM_FALLS, (8, 32): None}, P, (LSTM_FALL,)),         # diverged at P=8
    ({k: 0.5 for k in ATT_OK}, {k: 0.125 for k in LSTM_FALLS}, N, (SOLVES, LSTM_FALL)),
])
def test_capacity_claim(att, lstm, want, failed):
  c = only(rc.claims(grid({'transformer': att, 'lstm': lstm})), 'Attention solves MQAR')
  assert c.verdict == want, c.evidence
  assert fails(c, *failed)


def test_capacity_claim_guessing_is_not_falling_recall():
  assert rc.recall(0.5, 2) == 0.0 and rc.recall(1.0, 8) == 1.0 and rc.recall(0.7, 1) == 0.7
  # guessing among the values seen (1/P) at every P does not count as falling recall
  c = only(rc.claims(grid({'transformer': ATT_OK,
                            'lstm': {(2, 16): 0.5, (2, 32): 0.5, (8, 16): 0.125,
                                     (8, 32): 0.125}})), 'Attention solves MQAR')
  assert c.verdict == P and fails(c, LSTM_FALL)


def test_capacity_claim_a_diverged_attention_seed_is_not_solved():
  rows = [mq('transformer', p, d, a) for (p, d), a in ATT_OK.items()]
  rows += [mq('transformer', 8, 32, None, loss=None, seed=1, lr=lr) for lr in (1e-2, 1e-3)]
  rows += [mq('lstm', p, d, a) for (p, d), a in LSTM_FALLS.items()]
  c = only(rc.claims(rc.mark_best_lr(rows)), 'Attention solves MQAR')
  assert c.verdict == P and fails(c, SOLVES)
  assert 'P=8/D=32 0.97 (1 seed(s) diverged)' in c.evidence


def test_capacity_claim_needs_both_halves_and_two_numbers_of_pairs():
  c = only(rc.claims(grid({'transformer': ATT_OK})), 'Attention solves MQAR')
  assert c.verdict == P and fails(c, 'a recurrent model was run')
  c = only(rc.claims(grid({'lstm': LSTM_FALLS})), 'Attention solves MQAR')
  assert c.verdict == P and fails(c, 'an attention model was run')
  one_p = {k: v for k, v in ATT_OK.items() if k[0] == 2}
  c = only(rc.claims(grid({'transformer': one_p, 'lstm': {(2, 16): 0.9}})), 'Attention solves')
  assert c.verdict == P and fails(c, 'recall measured at two numbers of pairs or more')


def test_matching_state_claim_is_measured():
  rows = grid({'transformer': {(2, 16): 1.0, (8, 16): 0.2},     # P=8: attention did not learn
               'lstm': {(2, 16): 0.5, (2, 32): 0.97, (8, 16): 0.1},
               'gru': {(2, 16): 0.6, (8, 16): 0.1}})
  c = only(rc.claims(rows), 'state size at which')
  assert c.verdict == M and 'Does not hold' not in c.evidence
  assert "Attention's best accuracy: P=2 1.00, P=8 0.20" in c.evidence
  assert 'none for P=8: attention did not learn it (recall 0.09 < 0.5)' in c.evidence
  assert 'lstm: P=2 512 B' in c.evidence                        # 2 x 32 x 2 layers x 4 B
  assert 'gru: P=2 not within the widths tried' in c.evidence
  assert none_of(rc.claims(grid({'lstm': LSTM_FALLS})), 'state size at which')
  assert none_of(rc.claims(grid({'transformer': ATT_OK})), 'state size at which')
