"""Gradient flow: ||dL/dx_t|| against distance T-t, per model, at initialisation and
after training; the tanh RNN against its recurrent spectral radius rho.
This is the default study of a bare `python launch.py`.

  python launch.py                                         # = --config=experiments/grad_flow.py
  python launch.py --config=experiments/grad_flow.py --models=rnn,lstm,transformer --seeds=0
  python launch.py --config=experiments/grad_flow.py:full  # T up to 4096 (GPU/TPU)
  python launch.py --tasks=kback --workdir=runs/grad_flow_kback   # per-step loss variant

2 min 39 s on a 2-core CPU (measured 2026-12-02 on a fresh clone, 6 models; 3 min 15 s
on the same kind of machine a session earlier: timings vary between sessions); a re-run
of the same command skips finished points. The loss is first-token recall read at h_T (a
classification at the last step). Expect: the tanh RNN's gradient decays
geometrically with distance (about log rho per step, faster where tanh saturates),
LSTM/GRU decay more slowly, and the transformer's stays flat (every position is one
attention hop from the loss). Output: runs/grad_flow/results.jsonl and figures
runs/grad_flow/figures/grad_flow_{a,b,c,d}.{png,pdf}.
"""
import ml_collections

from experiments import long_range

# The models this study compares, in figure order.
MODELS = ['rnn', 'lstm', 'gru', 'lru', 'mingru', 'transformer']


def get_config(arg: str = ''):
  c = long_range.get_config()
  c.model.param_budget = 0             # this study sets its widths itself
  c.study = 'grad_flow'
  c.model.hidden = 64
  c.task.name = 'recall'
  c.train.batch_size = 16
  c.train.lr = 2e-3
  c.train.log_every = 50
  c.train.eval_examples = 2048
  del c.sweep['lrs']                   # one lr: the trained phase is not a comparison
  del c['jobs']                        # one process: its seeds are vmapped (both cores busy)
  c.sweep.models = list(MODELS)
  c.sweep.tasks = ['recall']
  c.sweep.seq_lens = [16, 64, 256, 1024]
  c.sweep.seeds = [0, 1, 2]
  c.grad_flow = ml_collections.ConfigDict(dict(
      batch_size=8,             # examples per seed in each measurement
      train_steps=100,          # steps of seqlab.train before the 'trained' measurement
      train_seq_len=128,        # T of the trained measurement
      rhos=[0.5, 0.9, 1.0, 1.1],
      rho_seq_len=256))
  if arg == 'full':
    c.sweep.seq_lens = [16, 64, 256, 1024, 4096]
    c.sweep.seeds = [0, 1, 2, 3, 4]
    c.grad_flow.train_steps = 1000
    c.grad_flow.train_seq_len = 512
    c.grad_flow.rho_seq_len = 1024
  elif arg == 'quick':
    c.sweep.seq_lens = [16, 64, 256]
    c.sweep.seeds = [0, 1, 2]           # 3: the fewest a 95% t-interval is useful with
    c.grad_flow.train_steps = 100
    c.grad_flow.rhos = [0.5, 0.9, 1.0, 1.1]
  elif arg:
    raise ValueError(f'unknown grad_flow variant {arg!r}; allowed: quick, full')
  return c
