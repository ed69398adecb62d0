"""Length generalisation: train each model once at T, evaluate at T, 2T, 4T, 8T, 16T.

  python launch.py --config=experiments/length_gen.py:quick

Measured (2026-12-02, :quick, 20 points, two at a time): 2 min 55 s wall in report.py:quick
on a fresh 2-core clone. Held-out loss / chance, trained at
T=32, at T and 16T: recall: transformer 0.0008 -> 0.0014 (kept), every recurrent model
near chance at T; kback: lru 0.001 -> 0.93, transformer 0.002 -> 2.2; copy: lru 0.006
-> 2.6, transformer 0.44 -> 34; adding: lstm 0.012 -> 5.2, gru 0.006 -> 3.7, transformer
0.003 -> 4.6; transformer+learned 0.0006-0.017 at T and no positions beyond. So at this
scale no recurrent model keeps the loss it learned at T (the recurrent claim: not
supported), and the sinusoidal transformer keeps it only on first-token recall.

Default: copy, kback, recall, adding and charlm at T=64, 1000 steps, hidden 64 (not
measured; roughly 20-30 minutes on a 2-core CPU by :quick's per-point time). The usual
expectation is that recurrent models keep their loss at lengths never trained on while the
transformer with learned positions has no position beyond T (its rows say so) and the
sinusoidal one degrades; :quick measured otherwise for the recurrent models (above). 'transformer+learned' is the transformer
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
  c.model.param_budget = 0             # this study sets its widths itself
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
    c.jobs = 2                          # both cores of a 2-core CPU (seqlab/jobs.py)
    c.model.hidden = 48
    c.train.steps = 300
    c.train.eval_examples = 2048
    c.train.checkpoint_every = 0       # the final checkpoint only: points resume whole
    c.sweep.tasks = ['copy', 'kback', 'recall', 'adding']
    c.sweep.seq_lens = [32]
    c.sweep.seeds = [0, 1, 2]           # 3: the fewest a 95% t-interval is useful with
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
