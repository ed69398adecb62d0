"""The length-generalisation study: one tiny run end to end (train at T, evaluate at 2T,
learned positions refused beyond T with a reason), resume, and its table on made-up rows
(every verdict branch of its claims: test_claims.py)."""
import os

import pytest

from seqlab import config as seqlab_config
from seqlab import sweep, train
from seqlab.studies import length_gen


def tiny_config():
  c = seqlab_config.load('length_gen:quick')
  c.num_devices = 1
  c.model.hidden = 8
  c.train.update(dict(steps=3, batch_size=4, eval_examples=8, log_every=1, warmup_steps=1))
  c.length_gen.multipliers = [1, 2]
  c.sweep.update(dict(models=['rnn', 'transformer+learned'], tasks=['recall'],
                      seq_lens=[4], seeds=[0]))
  return c


def test_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
  wd = str(tmp_path)
  rows = length_gen.run(tiny_config(), wd)
  by_model = {r['model']: r for r in rows}
  assert set(by_model) == {'rnn', 'transformer+learned'}
  rnn = {e['multiplier']: e for e in by_model['rnn']['evals']}
  assert rnn[2]['seq_len'] == 8 and rnn[2]['loss'] > 0 and rnn[2]['chance'] > 0
  learned = {e['multiplier']: e for e in by_model['transformer+learned']['evals']}
  assert learned[1]['loss'] > 0
  assert 'loss' not in learned[2] and 'no learned position beyond 5' in learned[2]['reason']
  assert os.path.exists(os.path.join(wd, 'figures', 'length_gen.png'))
  table = open(os.path.join(wd, 'table.md')).read()
  assert '| recall (T=4) | transformer+learned |' in table and '—' in table
  assert 'transformer+learned on recall at 2T: no learned position' in table

  def no_training(*a, **k):
    raise AssertionError('a finished point was trained again')
  monkeypatch.setattr(train, 'train', no_training)
  assert len(length_gen.run(tiny_config(), wd)) == 2


def test_variants_and_multipliers_are_checked():
  assert length_gen.split_variant('transformer+learned') == ('transformer',
                                                             {'positions': 'learned'})
  assert length_gen.split_variant('lstm') == ('lstm', {})
  with pytest.raises(sweep.ConfigError, match='applies only to transformer'):
    length_gen.split_variant('lstm+learned')
  with pytest.raises(sweep.ConfigError, match='unknown model variant'):
    length_gen.split_variant('transformer+rotary')
  c = tiny_config()
  c.length_gen.multipliers = [2, 4]
  with pytest.raises(sweep.ConfigError, match='must include 1'):
    length_gen.validate(c)


# ------------------------------------------------------------------------------- table
def row(task, model, ratios, chance=2.0):
  """A results line: loss/chance `ratios` at T, 2T, 4T; a str is a reason (not run)."""
  evals = [dict(multiplier=m, seq_len=8 * m, reason=v) if isinstance(v, str) else
           dict(multiplier=m, seq_len=8 * m, loss=v * chance, chance=chance)
           for m, v in zip((1, 2, 4), ratios)]
  return dict(task=task, model=model, seq_len=8, seed=0, evals=evals)


def test_table_marks_lengths_not_run_and_averages_seeds():
  rows = [row('kback', 'lstm', (0.1, 0.2, 0.3)), dict(row('kback', 'lstm', (0.3, 0.4, 0.5)), seed=1),
          row('kback', 'transformer+learned', (0.1, 'no learned position beyond 9', 'x'))]
  t = length_gen.table(rows)
  # the mean over the two seeds with its 95% t-interval (1 degree of freedom: wide),
  # cut at 0: a loss ratio is never negative
  assert '| kback (T=8) | lstm | 0.2 [0, 1.47] | 0.3 [0, 1.57] | 0.4 [0, ' in t
  assert '| kback (T=8) | transformer+learned | 0.1 | — | — |' in t
  assert 'mean over 1/2 seeds' in t
  assert 'transformer+learned on kback at 2T, 4T: no learned position beyond 9' in t
