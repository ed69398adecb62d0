"""Published tables side by side: rows of Bai, Kolter & Koltun (2018) Table 1 (generic
LSTM, GRU and RNN) and LRA's ListOps Transformer (Tay et al. 2021), trained by seqlab
with the papers' settings where published, next to the published numbers.

  python launch.py --config=experiments/paper.py:cpu    # 40 min 16 s on a shared 2-core CPU
                                                        # one point at a time; :cpu now trains
                                                        # two at once (jobs=2), not re-timed
  python launch.py --config=experiments/paper.py:full   # the papers' scale (GPU/TPU)

Each group below is one published row set; its settings are the papers' where they
published them (Bai et al. supplement Table 3 and the TCN repository's scripts; LRA's
listops config), and each model is sized to the group's parameter budget (Bai et al.
size every model to ~70K weights, 16K for copy memory). Published numbers and the
verdict rule: seqlab/studies/paper.py.

  :full  adding T=600, copy T=1000, sequential and permuted MNIST (784 pixels, Hub
         ylecun/mnist), ListOps T=2000 (LRA: 4 layers, width 512); the step budgets
         of the papers. The time this CPU would need is measured by
         --config.estimate_only=True (a few timed steps per point, written to
         estimate.md) and stated in docs/paper.md.
  :cpu   the same rows at shorter T and fewer steps: adding and copy at T=100, the
         8x8 digits of scikit-learn (T=64, offline) for sequential and permuted MNIST,
         ListOps at T=128 with a 2-layer width-64 transformer. Its claims test the
         papers' ordering: the GRU solves adding where the RNN stays at 1/6; the
         recurrent models sit at the memoryless copy baseline; LSTM and GRU far above
         the RNN on sequential digits; the transformer above ListOps' majority class.
  :quick the same as :cpu (experiments/report.py:quick does not run it; it draws its
         section when runs/report/paper holds results).
Expect (:cpu, measured; docs/paper.md): the GRU solves adding where the RNN stays at
1/6; every recurrent model at the copy baseline; the transformer above ListOps'
majority class; on the 64-pixel digits the RNN level with the GRU (no gap at T=64).
"""
import ml_collections

MODELS = ['rnn', 'lstm', 'gru']


def group(task, seq_len, steps, batch_size, lr, param_budget, clip_norm, models=MODELS,
          warmup_steps=50, **model):
  """One published row set: the task and the training settings of its points."""
  return ml_collections.ConfigDict(dict(
      task=task, seq_len=seq_len, models=tuple(models), steps=steps, batch_size=batch_size,
      lr=lr, warmup_steps=warmup_steps, param_budget=param_budget, clip_norm=clip_norm,
      model=ml_collections.ConfigDict(model)))


def get_config(arg: str = 'cpu'):
  if arg not in ('cpu', 'full', 'quick'):
    raise ValueError(f'unknown paper variant {arg!r}; allowed: cpu, full, quick')
  scale = 'cpu' if arg == 'quick' else arg
  c = ml_collections.ConfigDict()
  c.study = 'paper'
  c.scale = scale
  c.seed = 0
  c.num_devices = 0
  c.jobs = 2 if scale == 'cpu' else 1   # points at once, each its own process (CPU hosts)
  c.estimate_only = False   # time a few steps of every point and estimate the run; train none
  c.estimate_cpu = True     # estimate_only: time this machine too (False: the roofline only)
  c.seeds = (0, 1, 2)   # --config.seeds='(0,)'; 3: the fewest a t-interval is useful with
  c.model = ml_collections.ConfigDict(dict(
      name='lstm', hidden=64, layers=1, param_budget=0, recurrent_init='orthogonal',
      spectral_radius=1.0, forget_bias=1.0, unroll=1, heads=4, mlp_ratio=4,
      gate_init='constant', chrono_t_max=0, update_bias=0.0,
      positions='sinusoidal', pool='cls', kernel='auto', dtype='float32',
      r_min=0.9, r_max=0.999))
  # Pixels as real inputs (one per step); each image task reads its own default data.
  # revision: the commit sha (or tag) of the MNIST groups' Hub dataset, ylecun/mnist, to
  # pin for a paper ('' reads its default branch, which moves)
  c.task = ml_collections.ConfigDict(dict(name='adding', seq_len=100, pixels='real',
                                          revision=''))
  c.train = ml_collections.ConfigDict(dict(
      steps=1000, batch_size=32, lr=1e-3, warmup_steps=50, weight_decay=0.0, clip_norm=1.0,
      final_lr_fraction=0.0, log_every=250,
      eval_examples=2048,   # generated tasks; the digits' held-out split is read whole (179)
      tensorboard=False,
      checkpoint_every=500, keep_checkpoints=1, skip_nonfinite=0))
  g = ml_collections.ConfigDict()
  if scale == 'full':
    # Bai et al.: adding, batch 32, Adam 4e-3 (TCN add_test.py), ~7000 iterations in
    # their figure, clip 5 (supplement Table 3, LSTM); ~70K weights.
    g.adding = group('adding', 600, 7000, 32, 4e-3, 70_000, 5.0)
    # copy memory: batch 32, RMSprop 5e-4 in the repo (Adam here), 50 epochs of 10,000
    # sequences = 15,600 steps, clip 1; ~16K weights.
    g.copy = group('copy', 1000, 15_600, 32, 5e-4, 16_000, 1.0)
    # sequential / permuted MNIST: batch 64, Adam 2e-3 (pmnist_test.py), 20 epochs of
    # 60,000 = 18,750 steps, clip 1; ~70K weights. Permuted: forget bias 10 (Table 3).
    g.smnist = group('smnist', 784, 18_750, 64, 2e-3, 70_000, 1.0)
    g.psmnist = group('psmnist', 784, 18_750, 64, 2e-3, 70_000, 1.0, forget_bias=10.0)
    # LRA ListOps: 4 layers, width 512, mlp 1024, 8 heads, batch 32, 5000 steps, peak
    # lr ~1.6e-3 after 1000 warm-up steps (the repository's listops config).
    g.listops = group('listops', 2000, 5000, 32, 1.6e-3, 0, 1.0, models=['transformer'],
                      warmup_steps=1000, hidden=512, layers=4, heads=8, mlp_ratio=2, pool='mean',
                      kernel='auto')   # blocked: attention in O(T) memory (a CPU's estimate)
  else:
    g.adding = group('adding', 100, 1000, 32, 4e-3, 70_000, 5.0)
    g.copy = group('copy', 100, 1000, 32, 5e-4, 16_000, 1.0)
    g.smnist = group('digits', 64, 1000, 32, 2e-3, 70_000, 1.0)
    # the control lstm+forget1: the LSTM with the usual forget bias 1 on the same data
    # (tells whether the paper's forget bias 10 is what holds the LSTM back here)
    g.psmnist = group('pdigits', 64, 1000, 32, 2e-3, 70_000, 1.0, forget_bias=10.0,
                      models=MODELS + ['lstm+forget1'])
    g.listops = group('listops', 128, 1500, 32, 1.6e-3, 0, 1.0, models=['transformer'],
                      warmup_steps=300, hidden=64, layers=2, heads=4, mlp_ratio=2, pool='mean')
  c.groups = g
  return c
