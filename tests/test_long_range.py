"""The long-range study's rows, table and claims, drawn from results files the test
writes itself (plots read only results files)."""
import os

from seqlab.infra import writer
from seqlab.studies import long_range


def fake_sweep(workdir):
  rows = []
  for model, losses in {'rnn': [0.16, 0.17], 'lstm': [0.001, 0.002]}.items():
    for seed, loss in enumerate(losses):
      point = f'{model}-adding-T50-s{seed}'
      row = dict(point=point, model=model, task='adding', seq_len=50, seed=seed,
                 num_params=100, steps=3, final_loss=loss, final_accuracy=None,
                 chance_loss=1 / 6, wall_s=1.0, diverged_at_step=None)
      writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), row)
      for step, train_loss in [(1, 0.2), (2, 0.05 if model == 'rnn' else 0.01), (3, loss)]:
        m = writer.MetricWriter(os.path.join(workdir, point))
        m.write(step, {'loss': train_loss, 'grad_norm': 1.0})
        m.close()
      rows.append(row)
  # a diverged point
  writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), dict(
      rows[0], point='gru-adding-T50-s0', model='gru', final_loss=None, diverged_at_step=2))
  return rows


def test_rows_mark_solved_steps_to_solve_and_divergence(tmp_path):
  fake_sweep(str(tmp_path))
  rows = {r['point']: r for r in long_range.rows(str(tmp_path))}
  # training losses 0.2, 0.05, 0.16 (rnn s0): lowest / chance = 0.05 * 6; no fall measurable
  assert abs(rows['rnn-adding-T50-s0']['best_train_ratio'] - 0.3) < 1e-9
  assert rows['gru-adding-T50-s0']['best_train_ratio'] is None   # diverged
  assert not rows['rnn-adding-T50-s0']['solved']
  assert rows['lstm-adding-T50-s0']['solved']
  assert rows['lstm-adding-T50-s0']['steps_to_solve'] == 2  # 0.01 < 0.1 * 1/6
  assert rows['gru-adding-T50-s0']['diverged'] and not rows['gru-adding-T50-s0']['solved']


def test_table_has_mean_std_and_solved_counts(tmp_path):
  fake_sweep(str(tmp_path))
  table = long_range.table(long_range.rows(str(tmp_path)))
  assert '| adding | 50 | 0.167 |' in table
  assert '0.165 ± 0.005 (0/2 solved)' in table
  assert '0.0015 ± 0.0005 (2/2 solved in ~2 steps)' in table
  assert '1 diverged' in table


# ----------------------------------------------------------------------- lr selection
def test_select_lr_takes_the_best_mean_validation_loss_and_drops_the_rest():
  from seqlab.studies import study
  rows = [dict(model='lstm', task='adding', seq_len=100, seed=s, lr=lr, valid_loss=v,
               final_loss=f)
          for lr, s, v, f in [(1e-3, 0, 0.5, 0.01), (1e-3, 1, 0.5, 0.01),   # best on test ...
                              (3e-3, 0, 0.1, 0.2), (3e-3, 1, 0.2, 0.3),     # ... best on valid
                              (1e-2, 0, 0.01, 0.0), (1e-2, 1, None, None)]]  # one seed diverged
  chosen = study.select_lr(rows)
  assert {r['lr'] for r in chosen} == {3e-3} and len(chosen) == 2   # chosen on VALID, not EVAL
  assert all(r['lr_grid'] == [1e-3, 3e-3, 1e-2] for r in chosen)
  # without a valid_loss (a task with no VALID split) it falls back on final_loss
  for r in rows:
    r.pop('valid_loss')
  assert {r['lr'] for r in study.select_lr(rows)} == {1e-3}
  # groups are chosen independently; rows of no lr sweep pass through
  other = [dict(model='gru', task='adding', seq_len=100, seed=0, final_loss=0.3)]
  assert study.select_lr(other) == other


def test_lr_cause_names_the_grid_edge_only_with_three_or_more_lrs():
  from seqlab.studies import study
  assert 'smallest tried (0.001 of 0.001/0.003/0.01)' in study.lr_cause(
      [dict(lr=1e-3, lr_grid=[1e-3, 3e-3, 1e-2])])
  assert 'largest' in study.lr_cause([dict(lr=1e-2, lr_grid=[1e-3, 3e-3, 1e-2])])
  assert study.lr_cause([dict(lr=3e-3, lr_grid=[1e-3, 3e-3, 1e-2])]) is None
  assert study.lr_cause([dict(lr=1e-3, lr_grid=[1e-3, 3e-3])]) is None


def test_rows_keep_only_the_chosen_lr_and_the_table_states_the_grid(tmp_path):
  for lr, loss in ((1e-3, 0.15), (3e-3, 0.001)):
    for seed in (0, 1):
      writer.append_jsonl_atomic(os.path.join(tmp_path, 'results.jsonl'), dict(
          point=f'lstm-adding-T100-lr{lr:g}-s{seed}', model='lstm', task='adding',
          seq_len=100, seed=seed, lr=lr, valid_loss=loss, final_loss=loss, steps=10,
          hidden=8, num_params=1, chance_loss=1 / 6, diverged_at_step=None))
  rows = long_range.rows(str(tmp_path))
  assert [r['lr'] for r in rows] == [3e-3, 3e-3]
  table = long_range.table(rows)
  assert ', lr 0.003 (2/2 solved' in table and 'of 0.001/0.003' in table


# --------------------------------------------------------------------------- claims
import math  # noqa: E402

import pytest  # noqa: E402

from seqlab.studies import study  # noqa: E402

S, P, N = study.SUPPORTED, study.PARTLY, study.NOT_SUPPORTED


def row(task, model, t, ratio, seed=0, chance=1 / 6, **kw):
  """A chosen row whose held-out loss is `ratio` x chance (None: diverged)."""
  r = dict(task=task, model=model, seq_len=t, seed=seed, chance_loss=chance, steps=300,
           hidden=64, final_loss=None if ratio is None else ratio * chance,
           diverged=ratio is None, still_falling=0.0)
  r.update(kw)
  return r


def only(claims, words):
  found = [c for c in claims if words in c.text]
  assert len(found) == 1, [c.text for c in claims]
  return found[0]


def adding(rnn, lstm, gru, transformer=None, ts=(50, 100, 200)):
  rows = []
  for model, ratios in (('rnn', rnn), ('lstm', lstm), ('gru', gru), ('transformer', transformer)):
    if ratios is not None:
      rows += [row('adding', model, t, r) for t, r in zip(ts, ratios)]
  return rows


@pytest.mark.parametrize('rnn, lstm, gru, want, failed', [
    # T=50 is below LONG_T: the rnn solving it there is not against the claim
    ((0.01, 0.9, 0.95), (0.5, 0.01, 0.02), (0.5, 0.05, 0.05), S, None),
    ((0.9, 0.55, 0.6), (0.9, 0.09, 0.09), (0.9, 0.05, 0.05), S, None),   # edges inside
    ((0.9, 0.45, 0.9), (0.9, 0.01, 0.02), (0.9, 0.05, 0.05), P, 'rnn stays near chance at T=100'),
    ((0.9, 0.9, 0.9), (0.9, 0.01, 0.2), (0.9, 0.05, 0.05), P, 'lstm solves it at T=200'),
    ((0.9, 0.9, 0.9), (0.9, 0.01, 0.02), (0.9, None, None), P, 'gru solves it at T=100 (1/1 seeds diverged'),
    ((0.1, 0.2, 0.3), (0.9, 0.5, 0.6), (0.9, 0.9, 0.9), N, None),
])
def test_adding_claim_every_branch(rnn, lstm, gru, want, failed):
  c = only(long_range.claims(adding(rnn, lstm, gru)), 'Adding problem')
  assert c.verdict == want, c.evidence
  assert 'T >= 100' in c.text and 'Budget: 300 steps, hidden 64' in c.evidence
  if failed:
    assert failed in c.evidence.split('Does not hold:')[1]


def test_adding_claim_judges_the_transformer_when_it_ran():
  c = only(long_range.claims(adding((.9, .9, .9), (.9, .01, .01), (.9, .01, .01),
                                    transformer=(.01, .01, .5))), 'Adding problem')
  assert c.verdict == P and 'transformer solves it at T=200' in c.evidence
  assert 'LSTM and GRU solve it, and so does attention, while' in c.text


def test_adding_claim_needs_a_long_t_and_missing_models_fail():
  assert not [c for c in long_range.claims(adding((.9,), (.01,), (.01,), ts=(50,)))
              if 'Adding' in c.text]
  c = only(long_range.claims([row('adding', 'lstm', 100, 0.01)]), 'Adding problem')
  assert c.verdict == P and 'gru solves it at T=100 (not run)' in c.evidence
  assert 'rnn stays near chance at T=100' in c.evidence


def test_adding_claim_thresholds_are_strict_and_seeds_are_averaged():
  rows = [row('adding', 'rnn', 100, long_range.AT_CHANCE, chance=1.0),
          row('adding', 'lstm', 100, long_range.SOLVED_FRACTION, chance=1.0),
          row('adding', 'gru', 100, 0.02, seed=0), row('adding', 'gru', 100, 0.3, seed=1)]
  assert only(long_range.claims(rows), 'Adding problem').verdict == N   # gru mean 0.16


def test_cause_names_steps_lr_edge_or_width():
  base = dict(lr=3e-3, lr_grid=[1e-3, 3e-3, 1e-2])
  rows = [row('adding', 'lstm', 100, 0.9, still_falling=0.4, **base)]
  assert 'steps: the training loss still fell 40% over the last fifth of 300' in \
      long_range.cause(rows, 'adding', 'lstm', 100)
  rows = [row('adding', 'lstm', 100, 0.9, **dict(base, lr=1e-2))]
  assert long_range.cause(rows, 'adding', 'lstm', 100).startswith('lr: the best is the largest')
  rows = [row('adding', 'lstm', 100, 0.9, **base)]
  assert long_range.cause(rows, 'adding', 'lstm', 100).startswith('width or the model')
  rows = [row('adding', 'lstm', 100, 1.0, best_train_ratio=0.95, **base),
          row('adding', 'lstm', 100, 1.0, seed=1, best_train_ratio=0.97, **base)]
  assert long_range.cause(rows, 'adding', 'lstm', 100).startswith(
      'the training loss never left chance in 300 steps')
  rows[1]['best_train_ratio'] = 0.5   # one seed learned something: not 'never left'
  assert long_range.cause(rows, 'adding', 'lstm', 100).startswith('width or the model')
  assert long_range.cause(rows, 'adding', 'gru', 100) == 'not run'


@pytest.mark.parametrize('rnn, lstm, gru, want, failed', [
    ((0.01, 0.9, 0.9), (0.01, 0.01, 0.9), (0.01, 0.01, 0.01), S, None),
    ((0.01, 0.9, 0.9), (0.01, 0.9, 0.9), (0.01, 0.01, 0.9), P, 'lstm solves a longer T than the rnn (width'),
    ((0.01, 0.01, 0.01), (0.01, 0.01, 0.01), (0.01, 0.01, 0.01), N, None),   # no room above
    ((0.9, 0.9, 0.9), (0.9, 0.9, 0.9), (0.01, 0.9, 0.9), P, 'lstm'),         # none vs none
])
def test_recall_gating_claim_every_branch(rnn, lstm, gru, want, failed):
  ts, ch = (32, 128, 512), math.log(8)
  rows = [row('recall', m, t, r, chance=ch)
          for m, rs in (('rnn', rnn), ('lstm', lstm), ('gru', gru)) for t, r in zip(ts, rs)]
  c = only(long_range.claims(rows), 'gated cells')
  assert c.verdict == want, c.evidence
  assert 'Longest T solved: rnn' in c.evidence
  if failed:
    assert failed in c.evidence.split('Does not hold:')[1]


@pytest.mark.parametrize('att, want', [
    ((0.01, 0.02, 0.05), S), ((0.01, 0.5, 0.05), P), ((0.5, 0.5, None), N)])
def test_recall_attention_claim_every_branch(att, want):
  ts, ch = (32, 128, 512), math.log(8)
  rows = [row('recall', 'transformer', t, r, chance=ch) for t, r in zip(ts, att)]
  c = only(long_range.claims(rows), 'attention reads')
  assert c.verdict == want, c.evidence
  assert not [c for c in long_range.claims(rows) if 'gated cells' in c.text]   # no rnn: no claim


@pytest.mark.parametrize('ratios, want', [
    ({'rnn': 0.99, 'lstm': 0.9, 'gru': 0.6}, S),
    ({'rnn': 0.99, 'lstm': 0.1, 'gru': 0.6}, P),
    ({'rnn': 0.3, 'lstm': 0.1, 'gru': 0.01}, N),
])
def test_copy_claim_reads_the_longest_t(ratios, want):
  rows = [row('copy', m, 500, v, chance=0.04) for m, v in ratios.items()]
  rows += [row('copy', m, 100, 0.01, chance=0.1) for m in ratios]   # shorter T: ignored
  c = only(long_range.claims(rows), 'Copy memory')
  assert c.verdict == want and 'longest T (500)' in c.text


def test_claims_only_for_tasks_that_ran_and_longest_solved():
  assert [c.text.split(':')[0] for c in long_range.claims([row('copy', 'rnn', 10, 0.9)])] \
      == ['Copy memory at the longest T (10)']
  assert long_range.claims([]) == []
  rows = [row('recall', 'lstm', t, r) for t, r in ((32, 0.01), (128, 0.5), (512, 0.05))]
  assert long_range.longest_solved(rows, 'recall', 'lstm') == 512
  assert long_range.longest_solved(rows, 'recall', 'gru') is None


def test_figure_marks_the_longest_solved_t(tmp_path):
  rows = [row('recall', 'lstm', t, r) for t, r in ((32, 0.01), (128, 0.5))]
  paths = long_range.figure(rows, os.path.join(tmp_path, 'f'))
  assert any(p.endswith('.png') for p in paths)
