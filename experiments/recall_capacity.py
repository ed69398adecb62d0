"""Associative-recall capacity: MQAR (Arora et al. 2023, "Zoology") over the number of
key-value pairs and the model width, every model at its best learning rate.

  python launch.py --config=experiments/recall_capacity.py:quick

Measured (2026-12-02, :quick, 24 points, two at a time): 1 min 41 s wall in report.py:quick
on a fresh 2-core clone. Accuracy at each cell's best lr
(P=2 / P=4): transformer D=16 1.00 / 1.00, D=32 0.92 / 0.38 (one seed: D=32 at P=4 had not
learned it by 600 steps); lru D=16 0.53 / 0.36, D=32 0.84 / 0.38; lstm 0.56 / 0.33-0.36
(guessing among the values seen: 0.50 / 0.25). No recurrent state tried (256-512 B)
reaches attention's accuracy (4 KiB KV cache). With vocabulary 32 instead of 16 no model,
attention included, learned the binding in 600 steps (every cell within 0.15 of 1/P).

:full is Zoology's public setting (zoology/experiments/paper_configs/iclr24_zoology_figure2/
configs.py and the generator zoology/data/multiquery_ar.py): vocabulary 8,192, 2 layers,
widths 64 to 256, 4 to 64 pairs, query gaps ~ i^(0.01-1), no noise between queries, here at
one sequence length T=256 (4P <= T for every P) and the lr grid {1e-3, 3e-3, 1e-2, 3e-2};
Zoology trains 64 epochs of 100,000 sequences at batch 256-512, here 10,000 steps of 256
(a GPU run: 300 points). Differences that remain: our transformer blocks have an MLP
(Zoology's MQAR models have none) and the recurrent models are seqlab's (LSTM, GRU, LRU,
minGRU) rather than Zoology's mixers. Expect attention to solve every cell and each
recurrent model's accuracy to fall as pairs grow at a fixed width (Zoology, Fig. 2).

Variants (table, heat maps and claims: seqlab/studies/recall_capacity.py):
  :quick  scaled down for a 2-core CPU (part of experiments/report.py:quick): vocabulary
          16 (not 8,192), T=16 (4 x the most pairs, not 64-256), pairs {2, 4} (not 4-64),
          widths {16, 32} (not 64-256), lstm, lru, transformer, lrs {3e-3, 1e-2} (not 4),
          600 steps of 64 sequences (38k sequences, not 6.4M), 1 seed: 24 points
  :full   Zoology's settings above (GPU/TPU)
"""
import ml_collections

from experiments import long_range


def get_config(arg: str = ''):
  c = long_range.get_config()          # the same model and train options as every study
  c.model.param_budget = 0             # this study sets its widths itself
  c.study = 'recall_capacity'
  c.model.layers = 2                   # Zoology: 2 layers
  c.model.heads = 1                    # Zoology's MQAR attention: one head
  c.task = ml_collections.ConfigDict(dict(
      name='mqar', seq_len=256,
      num_pairs=8,                     # set per point from recall.num_pairs
      vocab_size=8192,                 # Zoology: 8,192 (keys: lower half, values: upper)
      power_a=0.01,                    # query gaps ~ i^(a-1) (Zoology's default)
      random_non_queries=False))       # Zoology's Figure-2 configs: blanks between queries
  c.recall = ml_collections.ConfigDict(dict(
      num_pairs=[4, 8, 16, 32, 64],    # key-value pairs P (axis)
      widths=[64, 128, 256],           # model width D (axis)
      lrs=[1e-3, 3e-3, 1e-2, 3e-2]))   # each model at its best of these (held-out loss)
  c.train.update(dict(steps=2000, batch_size=64, warmup_steps=100, log_every=200,
                      eval_examples=2048))
  c.sweep = ml_collections.ConfigDict(dict(
      models=['lstm', 'gru', 'lru', 'mingru', 'transformer'], tasks=['mqar'],
      seq_lens=[256], seeds=[0]))
  if arg == 'quick':
    c.jobs = 2                          # both cores of a 2-core CPU (seqlab/jobs.py)
    c.task.vocab_size = 16
    c.sweep.seq_lens = [16]
    c.sweep.models = ['lstm', 'lru', 'transformer']
    c.recall.num_pairs = [2, 4]
    c.recall.widths = [16, 32]
    c.recall.lrs = [3e-3, 1e-2]
    c.sweep.seeds = [0, 1, 2]           # 3: the fewest a 95% t-interval is useful with
    c.train.update(dict(steps=600, warmup_steps=50, log_every=200, eval_examples=2048,
                        checkpoint_every=0))
  elif arg == 'full':
    c.train.update(dict(steps=10000, batch_size=256, warmup_steps=500, log_every=500,
                        eval_examples=4096))
  elif arg:
    raise ValueError(f'unknown recall_capacity variant {arg!r}; allowed: quick, full')
  return c
