"""Long-range synthetic tasks: train models on adding / copy / recall / kback.

  python launch.py --config=experiments/long_range.py \
      --models=rnn,lstm,gru,transformer --tasks=adding --seq_lens=50,200 --seeds=0
  python launch.py --config=experiments/long_range.py:powered   # the powered study (= :quick)

Fair by default: every model is sized to ~20K weights (model.param_budget) and trained
at each lr of sweep.lrs; the table, figure and claims use the lr with the lowest VALID
loss (a split apart from the reported EVAL loss), each number with its 95% interval
over seeds and held-out examples (seqlab/studies/stats.py). Results in
runs/long_range/results.jsonl, one line per point; a table against chance; claims with
three outcomes per part (holds, fails, undecided).

Variants (table, figure and claims: seqlab/studies/long_range.py):
  (none)    6 models, adding at T in {50, 200}, lr in {3e-3, 1e-2}, 600 steps, 1 seed
  :powered  the powered study of the seed's central claim, on a 2-core CPU: adding and
  :quick    first-token recall at T in {64, 128}; rnn, lstm, gru and their init controls:
            chrono initialisation of the LSTM and GRU (Tallec & Ollivier 2018) and the GRU
            with update-gate bias +2 (lstm and gru on their fused kernel, tested equal to
            the reference scan); 5 seeds; the lr chosen from {1e-3, 3e-3, 1e-2} on VALID
            on seed 0 at T=64 for each (model, task), then held for every seed and T;
            2,000 steps of 32; 2,048 fresh held-out examples per evaluation; the
            transformer on recall (3 seeds) for the attention claim. T=256 did not fit the
            ~45-minute budget (a GRU step at T=256 is ~4x one at T=64 on this CPU), so T
            stops at 128. :quick is the report's name for it (experiments/report.py:quick).
            Time on a fresh 2-core clone: docs/report/report.md (timings).
  :full     adding, copy, recall at T from 50 to 1000, ~70K weights (Bai et al.), lr in
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
      gate_init='constant',             # lstm, gru gate biases: constant | chrono
      chrono_t_max=0,                   # chrono's T_max (0: the sequence length)
      update_bias=0.0,                  # gru update-gate bias (+2: the state kept at init)
      positions='sinusoidal', pool='cls',
      kernel='auto',                    # a kernel of seqlab.models.KERNELS; auto: the default
      dtype='float32',                  # compute dtype: float32 | bfloat16 | float16
      r_min=0.9, r_max=0.999))          # lru: the eigenvalue ring (seqlab.models.linear_rnn)
  c.task = ml_collections.ConfigDict(dict(name='adding', seq_len=50))
  c.train = ml_collections.ConfigDict(dict(
      steps=600, batch_size=32, lr=3e-3, warmup_steps=50, weight_decay=0.0, clip_norm=1.0,
      final_lr_fraction=0.0, log_every=100, tensorboard=False,
      eval_examples=2048,               # fresh held-out examples of a generated task (a data
                                        # set's held-out split is read whole, once)
      checkpoint_every=100,             # also at the end and on SIGTERM; 0: only those
      keep_checkpoints=2,               # the last K, plus the best by VALID loss
      skip_nonfinite=0))                # >0: skip up to this many bad updates in a row
  c.sweep = ml_collections.ConfigDict(dict(
      models=['rnn', 'lstm', 'gru', 'lru', 'mingru', 'transformer'], tasks=['adding'],
      seq_lens=[50, 200],
      seeds=[0],
      # Each (model, task, T) at the lr of these with the best validation loss; Adam's
      # range for recurrent nets (TCN's scripts: 2e-3..4e-3; uRNN/IndRNN: 1e-3, 2e-3).
      lrs=[3e-3, 1e-2],                 # [] : train.lr alone
      # 0: every lr at every point; k: the lr is chosen on the first k seeds (at each T, or
      # with lr_at='shortest' at the shortest T), then held for the other seeds and lengths
      lr_seeds=0, lr_at='each',
      skip=[]))                         # point-name patterns not run, e.g. transformer-adding-*
  if arg in ('quick', 'powered'):
    c.jobs = 2                          # both cores of a 2-core CPU (seqlab/jobs.py)
    c.sweep.models = ['rnn', 'lstm:fused', 'gru:fused', 'lstm:fused+chrono',
                      'gru:fused+chrono', 'gru:fused+bias2', 'transformer']
    c.train.steps = 2000
    c.train.log_every = 200
    c.train.checkpoint_every = 0        # a point is a minute: saved at the end and on a signal
    c.sweep.tasks = ['adding', 'recall']
    c.sweep.seq_lens = [64, 128]
    c.sweep.seeds = [0, 1, 2, 3, 4]
    c.sweep.lrs = [1e-3, 3e-3, 1e-2]
    c.sweep.lr_seeds = 1                # the lr is chosen on the first seed ...
    c.sweep.lr_at = 'shortest'          # ... at the shortest T, then held
    # attention is the reference on recall only (it solves it on every seed so far): 3 seeds
    c.sweep.skip = ['transformer-adding-*', 'transformer-*-s3', 'transformer-*-s4']
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
    raise ValueError(f'unknown long_range variant {arg!r}; allowed: quick, powered, full')
  return c
