"""Long-range synthetic tasks: train models on adding / copy / recall / kback.

  python launch.py --config=experiments/long_range.py \
      --models=rnn,lstm,gru,transformer --tasks=adding --seq_lens=50,200 --seeds=0
  python launch.py --config=experiments/long_range.py:quick     # the report's variant

Fair by default: every model is sized to ~20K weights (model.param_budget) and trained
at each lr of sweep.lrs; the table, figure and claims use, per (model, task, T), the lr
with the best validation loss (a split apart from the reported held-out loss).
Expect: LSTM and GRU far below the adding problem's chance MSE of 1/6 at T >= 100, the
vanilla RNN at chance (Hochreiter & Schmidhuber 1997; Bai et al. 2018). Results in
runs/long_range/results.jsonl, one line per point; a table against chance; claims.

Variants (table, figure and claims: seqlab/studies/long_range.py):
  (none)  6 models, adding at T in {50, 200}, lr in {3e-3, 1e-2}, 600 steps, 1 seed
  :quick  rnn, lstm, gru, transformer on adding and first-token recall at T in
          {32, 128}, lr in {3e-3, 1e-2}, 2 seeds, 400 steps, the transformer on recall
          only (sweep.skip), two points at a time (jobs=2); 5 min 12 s on a fresh
          2-core clone (in report.py:quick, 2026-12-02)
  :full   adding, copy, recall at T from 50 to 1000, ~70K weights (Bai et al.), lr in
          {1e-3, 3e-3, 1e-2}, 3 seeds, 3000 steps (GPU/TPU)
"""
import ml_collections


def get_config(arg: str = ''):
  c = ml_collections.ConfigDict()
  c.study = 'long_range'
  c.seed = 0
  c.num_devices = 0                     # 0: every device jax sees
  c.jobs = 1                            # points at once, each its own process (CPU hosts)
  c.model = ml_collections.ConfigDict(dict(
      name='lstm', hidden=64, layers=1,
      param_budget=20_000,              # > 0: each model's width sized to ~this many weights
      recurrent_init='orthogonal',
      spectral_radius=1.0, forget_bias=1.0, unroll=1, heads=4, mlp_ratio=4,
      positions='sinusoidal', pool='cls',
      kernel='auto',                    # a kernel of seqlab.models.KERNELS; auto: the default
      dtype='float32',                  # compute dtype: float32 | bfloat16 | float16
      r_min=0.9, r_max=0.999))          # lru: the eigenvalue ring (seqlab.models.linear_rnn)
  c.task = ml_collections.ConfigDict(dict(name='adding', seq_len=50))
  c.train = ml_collections.ConfigDict(dict(
      steps=600, batch_size=32, lr=3e-3, warmup_steps=50, weight_decay=0.0, clip_norm=1.0,
      final_lr_fraction=0.0, log_every=100, eval_batches=8, tensorboard=False,
      checkpoint_every=100,             # also at the end and on SIGTERM; 0: only those
      keep_checkpoints=2,               # the last K, plus the best by held-out loss
      skip_nonfinite=0))                # >0: skip up to this many bad updates in a row
  c.sweep = ml_collections.ConfigDict(dict(
      models=['rnn', 'lstm', 'gru', 'lru', 'mingru', 'transformer'], tasks=['adding'],
      seq_lens=[50, 200],
      seeds=[0],
      # Each (model, task, T) at the lr of these with the best validation loss; Adam's
      # range for recurrent nets (TCN's scripts: 2e-3..4e-3; uRNN/IndRNN: 1e-3, 2e-3).
      lrs=[3e-3, 1e-2],                 # [] : train.lr alone
      skip=[]))                         # point-name patterns not run, e.g. transformer-adding-*
  if arg == 'quick':
    c.jobs = 2                          # both cores of a 2-core CPU (seqlab/jobs.py)
    c.sweep.models = ['rnn', 'lstm', 'gru', 'transformer']
    c.train.steps = 400
    c.train.checkpoint_every = 0        # a point is seconds: saved at the end and on a signal
    c.sweep.tasks = ['adding', 'recall']
    c.sweep.seq_lens = [32, 128]
    c.sweep.seeds = [0, 1]
    c.sweep.skip = ['transformer-adding-*']   # 4x a recurrent point's time; recall tests it
  elif arg == 'full':
    c.model.param_budget = 70_000       # Bai et al. (2018): ~70K weights per model
    c.sweep.lrs = [1e-3, 3e-3, 1e-2]
    c.train.steps = 3000
    c.train.batch_size = 64
    c.train.log_every = 250
    c.sweep.tasks = ['adding', 'copy', 'recall']
    c.sweep.seq_lens = [50, 100, 200, 400, 600, 1000]
    c.sweep.seeds = [0, 1, 2]
  elif arg:
    raise ValueError(f'unknown long_range variant {arg!r}; allowed: quick, full')
  return c
