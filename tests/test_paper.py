"""The published-table study: points and their settings, the row verdicts (within the
seeds' spread, same side of chance, differs) and every branch of its claims, on made-up
rows; and the estimate mode end to end on a tiny config."""
import math

import pytest

from seqlab import config as seqlab_config
from seqlab import sweep
from seqlab.studies import paper, study

S, P, N = study.SUPPORTED, study.PARTLY, study.NOT_SUPPORTED


def row(group, model, value, seed=0, task=None, t=None, chance=None, majority=None):
  """A results row of `group` whose metric is `value` (None: diverged)."""
  pub = paper.PUBLISHED[group]
  acc = pub['metric'] == 'accuracy'
  return dict(group=group, model=model, seed=seed, task=task or group, seq_len=t or pub['t'],
              steps=100, lr=1e-3, chance_loss=chance or pub['chance'] or math.log(10),
              final_loss=None if value is None else (0.5 if acc else value),
              final_accuracy=value if acc else None,
              majority_accuracy=majority if majority is not None else (pub['chance'] or 0.17))


def test_points_and_their_settings_follow_the_groups():
  c = seqlab_config.load('paper:cpu')
  ps = paper.points(c)
  assert len(ps) == len(c.seeds) * sum(len(g.models) for g in c.groups.values())
  p = next(p for p in ps if p['group'] == 'psmnist' and p['model'] == 'lstm')
  pc = paper.point_config(c, p)
  assert (pc.task.name, pc.task.seq_len, pc.model.name) == ('pdigits', 64, 'lstm')
  assert pc.model.forget_bias == 10.0 and pc.model.param_budget == 70_000   # Bai et al.
  assert pc.train.lr == c.groups.psmnist.lr and pc.train.steps == c.groups.psmnist.steps
  lo = paper.point_config(c, next(p for p in ps if p['group'] == 'listops'))
  assert (lo.model.layers, lo.model.pool, lo.train.warmup_steps) == (2, 'mean', 300)
  assert paper.point_name(p) == 'psmnist-lstm-T64-s0'
  full = seqlab_config.load('paper:full')
  assert {g: (full.groups[g].task, full.groups[g].seq_len) for g in full.groups} == {
      'adding': ('adding', 600), 'copy': ('copy', 1000), 'smnist': ('smnist', 784),
      'psmnist': ('psmnist', 784), 'listops': ('listops', 2000)}
  # estimate_only times the images on an offline stand-in of the same length and readout
  sp = next(p for p in paper.points(full) if p['group'] == 'smnist')
  assert paper.point_config(full, sp, stand_in=True).task.name == 'adding'


def test_validate_names_unknown_groups_and_models():
  c = seqlab_config.load('paper:cpu')
  with c.unlocked():
    c.groups.listops.models = ('transformer', 'lstm')
  with pytest.raises(sweep.ConfigError, match=r"no published number for \['lstm'\]"):
    paper.validate(c)
  c = seqlab_config.load('paper:cpu')
  with c.unlocked():
    c.groups.scifar = c.groups.copy
  with pytest.raises(sweep.ConfigError, match='no published row'):
    paper.validate(c)


@pytest.mark.parametrize('rows, verdict', [
    # at the paper's own T and task: within mean +- 2 std
    ([row('adding', 'gru', 4e-5, 0), row('adding', 'gru', 7e-5, 1)], 'within spread'),
    # outside the spread but both solve it
    ([row('adding', 'gru', 1e-3, 0), row('adding', 'gru', 1e-3, 1)], 'same side of chance'),
    # not the paper's setting (T=100): only the side of chance is compared
    ([row('adding', 'gru', 5.3e-5, 0, t=100), row('adding', 'gru', 5.3e-5, 1, t=100)],
     'same side of chance'),
    ([row('adding', 'gru', 0.16, 0), row('adding', 'gru', 0.17, 1)], 'differs'),
    ([row('adding', 'lstm', 0.01, 0), row('adding', 'lstm', 0.01, 1)], 'differs'),
    ([row('adding', 'gru', 1e-4, 0), row('adding', 'gru', None, 1)], 'differs'),   # diverged
    # the paper's rnn (21.5% against 11.35%) just beats chance: 0.114 of the gap >= BEATS
    ([row('smnist', 'rnn', 0.9, task='digits', t=64, majority=0.156)], 'same side of chance'),
    ([row('smnist', 'rnn', 0.2, task='digits', t=64, majority=0.156)], 'differs'),
])
def test_row_verdicts(rows, verdict):
  c = paper.compare(rows)
  assert c['verdict'] == verdict, c


def test_row_verdict_reasons_and_table():
  c = paper.compare([row('adding', 'gru', 1e-4, 0), row('adding', 'gru', None, 1)])
  assert c['why'] == '1 of 2 seeds diverged'
  c = paper.compare([row('adding', 'lstm', 0.01)])
  assert c['why'] == 'seqlab beats chance, the paper does not'
  rows = [row('listops', 'transformer', 0.40, s, t=128, majority=0.17) for s in (0, 1)]
  rows += [row('adding', 'rnn', 0.17, t=100)]
  table = paper.table(rows)
  lines = table.splitlines()
  assert lines[2].startswith('| adding (mse) | rnn | 0.177 (T=600) | 0.17 ± 0 (1) | adding T=100')
  assert '| listops (accuracy) | transformer | 36.4% (T=2000) | 40.0% ± 0.0% (2) |' in table
  assert 'same side of chance: both beat chance' in table and 'Tay et al. 2021' in table
  assert 'compares only the side of chance' in table   # T=128 and T=100: not the papers'
  assert paper.table([]) == '(no results)'


def adding_rows(gru, rnn):
  return [row('adding', 'gru', gru * (1 / 6), t=100), row('adding', 'rnn', rnn * (1 / 6), t=100)]


@pytest.mark.parametrize('gru, rnn, want', [(0.01, 0.99, S), (0.01, 0.3, P), (0.5, 0.99, P),
                                            (0.5, 0.3, N)])
def test_adding_claim(gru, rnn, want):
  (c,) = paper.claims(adding_rows(gru, rnn))
  assert c.verdict == want and 'Adding' in c.text
  assert 'adding T=100, 100 steps' in c.evidence


def test_adding_claim_with_a_diverged_gru_fails_that_part():
  rows = adding_rows(0.01, 0.99)
  rows[0]['final_loss'] = None
  (c,) = paper.claims(rows)
  assert c.verdict == P and 'Does not hold: the gru solves it' in c.evidence


@pytest.mark.parametrize('ratios, want', [((0.99, 1.0, 0.98), S), ((0.99, 0.1, 0.98), P),
                                          ((0.1, 0.2, 0.3), N)])
def test_copy_claim(ratios, want):
  rows = [row('copy', m, r * 0.2, chance=0.2, t=100) for m, r in zip(('rnn', 'lstm', 'gru'), ratios)]
  (c,) = paper.claims(rows)
  assert c.verdict == want and 'memoryless baseline' in c.text


@pytest.mark.parametrize('accs, want, failed', [
    ({'rnn': 0.4, 'lstm': 0.9, 'gru': 0.95}, S, None),
    ({'rnn': 0.8, 'lstm': 0.9, 'gru': 0.95}, N, None),
    ({'rnn': 0.6, 'lstm': 0.79, 'gru': 0.95}, P, 'lstm >= rnn + 20 points on smnist'),
])
def test_digits_claim(accs, want, failed):
  rows = [row('smnist', m, a, task='digits', t=64) for m, a in accs.items()]
  (c,) = paper.claims(rows)
  assert c.verdict == want, c.evidence
  assert ('T=64 is 12x shorter than the paper\'s 784' in c.evidence) == (want != S)
  if failed:
    assert c.evidence.endswith(f'Does not hold: {failed}.')


def test_digits_claim_judges_both_pixel_orders_and_missing_rnn_fails():
  rows = [row(g, m, a, task='digits', t=64) for g in ('smnist', 'psmnist')
          for m, a in (('rnn', 0.3), ('lstm', 0.9), ('gru', 0.9))]
  rows[-1] = row('psmnist', 'gru', 0.4, task='pdigits', t=64)
  (c,) = paper.claims(rows)
  assert c.verdict == P and 'gru >= rnn + 20 points on psmnist' in c.evidence
  (c,) = paper.claims([row('smnist', 'lstm', 0.9, task='digits', t=64)])
  assert c.verdict == N


@pytest.mark.parametrize('accs, want', [((0.4, 0.3), S), ((0.4, 0.15), N), ((0.4, None), N)])
def test_listops_claim(accs, want):
  rows = [row('listops', 'transformer', a, s, t=128, majority=0.17) for s, a in enumerate(accs)]
  (c,) = paper.claims(rows)
  assert c.verdict == want and 'majority class 17.0%' in c.evidence


def test_no_rows_no_claims_and_figure_reads_rows(tmp_path):
  assert paper.claims([]) == []
  rows = adding_rows(0.01, 0.99) + [row('listops', 'transformer', 0.4, t=128, majority=0.17)]
  paths = paper.figure(rows, str(tmp_path / 'paper'))
  assert {p.rsplit('.', 1)[1] for p in paths} == {'png', 'pdf'}


def test_estimate_times_every_point_and_writes_the_table(tmp_path):
  c = seqlab_config.load('paper:cpu')
  with c.unlocked():
    c.estimate_only, c.seeds, c.num_devices = True, (0, 1), 1
    for name in list(c.groups):
      if name != 'adding':
        del c.groups[name]
    c.groups.adding.models = ('rnn',)
    c.groups.adding.param_budget = 500
    c.groups.adding.seq_len = 8
  assert paper.run(c, str(tmp_path)) == []
  text = (tmp_path / 'estimate.md').read_text()
  assert text.splitlines()[2].startswith('| adding-rnn-T8-s0 |') and '| 1000 | 2 |' in text
  assert not (tmp_path / 'results.jsonl').exists()   # nothing trained for the table
