"""The recall-capacity study: one tiny MQAR sweep end to end (rows, best lr, state bytes,
table, both figures), resume, and the best lr on made-up rows (every verdict branch of
its claims: test_claims.py)."""
import os

import pytest

from seqlab import config as seqlab_config
from seqlab import sweep, train
from seqlab.studies import recall_capacity as rc
from seqlab.studies import study


def tiny_config():
  c = seqlab_config.load('recall_capacity:quick')
  c.num_devices = 1
  c.task.vocab_size = 16
  c.train.update(dict(steps=3, batch_size=4, eval_examples=8, log_every=1, warmup_steps=1))
  c.recall.update(dict(num_pairs=[1, 2], widths=[8], lrs=[1e-2]))
  c.sweep.update(dict(models=['rnn', 'transformer'], seq_lens=[8], seeds=[0]))
  return c


def test_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
  wd = str(tmp_path)
  rows = rc.run(tiny_config(), wd)
  assert len(rows) == 4 and all(r['best_lr'] for r in rows)    # one lr: each is its best
  names = {r['point'] for r in rows}
  assert 'transformer-P2-D8-lr0.01-T8-s0' in names
  sizes = {r['model']: r['state_bytes'] for r in rows}
  assert sizes == {'rnn': 8 * 2 * 4, 'transformer': 2 * 8 * 8 * 2 * 4}
  for stem in ('recall_capacity', 'recall_by_state'):
    assert os.path.exists(os.path.join(wd, 'figures', f'{stem}.png'))
  table = open(os.path.join(wd, 'table.md')).read()
  assert '| transformer | 8 | 1 KiB |' in table and '| rnn | 8 | 64 B |' in table

  def no_training(*a, **k):
    raise AssertionError('a finished point was trained again')
  monkeypatch.setattr(train, 'train', no_training)
  assert len(rc.run(tiny_config(), wd)) == 4


def test_checks_the_task_and_the_length():
  c = tiny_config()
  c.recall.num_pairs = [1, 4]
  with pytest.raises(sweep.ConfigError, match='T >= 4P = 16'):
    rc.validate(c)
  c = tiny_config()
  c.sweep.tasks = ['copy']
  with pytest.raises(sweep.ConfigError, match='only the mqar task'):
    rc.validate(c)


def test_state_bytes_per_model():
  assert rc.state_bytes('lstm', 32, 2, 64) == 2 * 32 * 2 * 4
  assert rc.state_bytes('gru', 32, 2, 64) == rc.state_bytes('mingru', 32, 2, 64) == 32 * 2 * 4
  assert rc.state_bytes('lru', 32, 1, 64) == 2 * 32 * 4          # complex: 2 floats
  assert rc.state_bytes('transformer', 32, 2, 64) == 2 * 64 * 32 * 2 * 4


# ------------------------------------------------------------------------------ claims
def row(model, pairs, width, acc, lr=1e-2, loss=1.0, seed=0):
  """A point whose VALID and EVAL losses are `loss` (test_claims.py separates them)."""
  return dict(model=model, num_pairs=pairs, hidden=width, seq_len=16, seed=seed, lr=lr,
              final_loss=loss, valid_loss=loss, final_accuracy=acc, final_accuracy_se=0.0,
              eval_examples=2048, state_bytes=rc.state_bytes(model, width, 2, 16))


def only(claims, words):
  found = [c for c in claims if words in c.text]
  assert len(found) == 1
  return found[0]


def test_best_lr_is_the_lowest_valid_loss_and_the_matching_state_is_read_off():
  rows = rc.mark_best_lr([row('lstm', 2, 16, 0.2, lr=1e-3, loss=2.0),
                          row('lstm', 2, 16, 0.97, lr=1e-2, loss=0.1),
                          row('lstm', 2, 32, None, lr=1e-2, loss=None),   # diverged
                          row('lstm', 2, 32, 0.99, lr=1e-3, loss=0.05),
                          row('transformer', 2, 16, 1.0)])
  b = rc.best(rows)
  cell = b[('lstm', 2, 16)]
  assert cell['accuracy'].value == 0.97 and (cell['lrs'], cell['state_bytes'],
                                             cell['diverged_seeds']) == ([1e-2], 256, 0)
  assert b[('lstm', 2, 32)]['lrs'] == [1e-3]
  ms = rc.matching_state(rows)
  assert ms['attention'] == {2: 1.0} and ms['match'][('lstm', 2)] == 256
  c = only(rc.claims(rows), 'state size at which')
  assert c.verdict == study.MEASURED and 'lstm: P=2 256 B' in c.evidence
  assert rc.claims([]) == []
