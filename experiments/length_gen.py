"""Length generalisation: train each model once at T, evaluate at T, 2T, 4T, 8T, 16T.

  python launch.py --config=experiments/length_gen.py:quick

MEASURED_QUICK

Default: copy, kback, recall, adding and charlm at T=64, 1000 steps, hidden 64 (about
25 minutes on a 2-core CPU, estimated from :quick). Expect the recurrent models' loss at
lengths they were never trained on to stay near their loss at T where they learned the
task, the transformer with learned positions to have no position beyond T (its rows say
so), and the sinusoidal transformer to degrade. 'transformer+learned' is the transformer
with positions='learned' (seqlab/studies/length_gen.py).

Variants (table, figure and claims: seqlab/studies/length_gen.py):
  :quick  copy, kback, recall, adding at T=32; lstm, gru, lru, transformer,
          transformer+learned; 300 steps, hidden 48, 1 seed (part of
          experiments/report.py:quick)
  :full   the five tasks (charlm included) at T=128, 3000 steps, hidden 128, 3 seeds (GPU/TPU)
"""
import ml_collections

from experiments import long_range


def get_config(arg: str = ''):
  c = long_range.get_config()          # the same model and train options as every study
  c.study = 'length_gen'
  c.task = ml_collections.ConfigDict(dict(
      name='copy', seq_len=64,
      dataset='stdlib', tokenizer='byte'))   # charlm: the offline stdlib corpus, bytes
  c.length_gen = ml_collections.ConfigDict(dict(
      multipliers=[1, 2, 4, 8, 16]))         # evaluation lengths m x T, without retraining
  c.train.update(dict(steps=1000, log_every=100))
  c.sweep = ml_collections.ConfigDict(dict(
      models=['lstm', 'gru', 'lru', 'transformer', 'transformer+learned'],
      tasks=['copy', 'kback', 'recall', 'adding', 'charlm'], seq_lens=[64], seeds=[0]))
  if arg == 'quick':
    c.model.hidden = 48
    c.train.steps = 300
    c.train.eval_batches = 4
    c.train.checkpoint_every = 0       # the final checkpoint only: points resume whole
    c.sweep.tasks = ['copy', 'kback', 'recall', 'adding']
    c.sweep.seq_lens = [32]
  elif arg == 'full':
    c.model.hidden = 128
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.log_every = 250
    c.sweep.seq_lens = [128]
    c.sweep.seeds = [0, 1, 2]
  elif arg:
    raise ValueError(f'unknown length_gen variant {arg!r}; allowed: quick, full')
  return c
