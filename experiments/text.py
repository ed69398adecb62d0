"""Real text and ListOps: char-level LM, text classification, LRA ListOps, offline by default.

  python launch.py --config=experiments/text.py --tasks=charlm --models=lstm,transformer \
      --seq_lens=128,512
  python launch.py --config=experiments/text.py --tasks=listops --models=lstm,transformer \
      --seq_lens=128
  python launch.py --config=experiments/text.py --tasks=textclf --models=lstm,transformer \
      --seq_lens=256

Offline corpora (no download; see seqlab/data/text_tasks.py): charlm reads the running
interpreter's top-level standard-library *.py files (every 10th file held out);
textclf classifies which of 4 stdlib packages (asyncio, email, unittest, xml) a
paragraph of source comes from; listops is generated from the LRA grammar.
Other data: --config.task.dataset=karpathy/tiny_shakespeare (a Hub id, needs the
network), or --config.task.dataset= --config.task.path='data/*.csv'
--config.task.text_column=review --config.task.label_column=sentiment.
Text from a finished charlm point, in Python:
seqlab.sampling.sample_text(point_dir, prompt, steps, temperature, seed).

Measured on a shared 2-core CPU (defaults: 200 steps, batch 16, hidden 64, seed 0; held-out
loss over 8 batches): the charlm command above took 4m55s wall; bits/char vs the unigram
baseline 4.541: lstm 3.99 (T=128), 3.86 (T=512); transformer 3.69, 3.69. ListOps T=128
(58 s): both models 0.148 accuracy vs majority 0.164 (at chance: 200 steps is far too few).
textclf T=256 (80 s): lstm 0.359, transformer 0.273 vs majority
0.306. With --config.train.steps=1000 (eval over 46 batches = 736 of 744 held-out rows)
textclf lstm reaches 0.529 vs 0.306 (52 s); ListOps T=64 lstm 0.193 vs 0.169 (33 s).
A final table prints bits/char vs the unigram entropy (charlm) and accuracy vs the
majority class (textclf, listops).
"""
import ml_collections

from experiments import long_range


def get_config(arg: str = ''):
  c = long_range.get_config()          # the same model and train options as every study
  c.model.param_budget = 0             # this study sets its widths itself
  c.study = 'text'
  c.task = ml_collections.ConfigDict(dict(
      name='charlm', seq_len=128,
      dataset='stdlib',                 # 'stdlib' (offline), a Hub id, or '' to read `path`
      path='',                          # local file or glob: .txt .csv .jsonl .parquet
      config_name='',                   # Hub config, e.g. wikitext-2-raw-v1
      text_column='text', label_column='label',
      split='train', eval_split='',     # '' -> every 10th row of `split` is held out
      tokenizer='byte',                 # 'byte' (UTF-8, 256 ids) or 'char' (train alphabet)
      eval_fraction=0.1,
      revision=''))                     # a Hub dataset's commit sha or tag: pin one for a
                                        # paper ('' reads its default branch, which moves)
  c.train.update(dict(steps=200, batch_size=16, warmup_steps=20, log_every=50))
  c.sweep = ml_collections.ConfigDict(dict(
      models=['lstm', 'transformer'], tasks=['charlm'], seq_lens=[128, 512], seeds=[0]))
  if arg == 'full':  # GPU/TPU scale
    c.model.hidden = 256
    c.train.steps = 5000
    c.train.batch_size = 64
    c.train.log_every = 250
    c.sweep.tasks = ['charlm', 'textclf', 'listops']
    c.sweep.seq_lens = [256, 1024, 2000]
  elif arg == 'quick':  # part of experiments/report.py:quick
    c.jobs = 2                          # both cores of a 2-core CPU (seqlab/jobs.py)
    c.sweep.tasks = ['charlm', 'listops']
    c.sweep.seq_lens = [128]
    c.sweep.seeds = [0, 1, 2]           # 3: the fewest a 95% t-interval is useful with
  elif arg:
    raise ValueError(f'unknown text variant {arg!r}; allowed: quick, full')
  return c
