"""Impulse responses (the IIR-filter view) of every model at initialisation, beside
the gradient-norm-by-distance curve of the grad_flow study.

  python launch.py --config=experiments/impulse.py
  python launch.py --config=experiments/impulse.py --models=rnn,lstm,lru,mingru --seq_lens=512

About 1 minute on a busy 2-core CPU (6 models x T=256 x 2 seeds, forward passes
only). A unit impulse in the embedded-input space at t=0, zeros after; r_t =
||h_t - h^0_t|| of the backbone output, normalised by r_0. Expect (measured, H=64):
lru decays slowly (|lambda| in [0.9, 0.999]; r_255/r_0 ~ 0.005), mingru as (1 - z)^t
with z = sigmoid(0) = 1/2 at init (r_10/r_0 ~ 1e-3), GRU ~0.7 and LSTM ~0.975 per
step, the tanh RNN barely (0.33 at t=255), the transformer drops at once and stays
~1e-3. Output: runs/impulse/results.jsonl and runs/impulse/figures/impulse.{png,pdf};
panel (b) reads the grad_flow study beside the workdir, runs/grad_flow/results.jsonl
(drawn only if it exists: run experiments/grad_flow.py first).
"""
import ml_collections

from experiments import grad_flow


def get_config(arg: str = ''):
  c = grad_flow.get_config()
  c.study = 'impulse'
  c.sweep.models = list(grad_flow.MODELS)
  c.sweep.seq_lens = [256]
  c.sweep.seeds = [0, 1, 2]             # 3: the fewest a 95% t-interval is useful with
  c.impulse = ml_collections.ConfigDict(dict(
      directions=8))                    # random unit impulses averaged
  if arg in ('long', 'full'):
    c.sweep.seq_lens = [2048]
  elif arg not in ('', 'quick'):
    raise ValueError(f'unknown impulse variant {arg!r}; allowed: quick, long, full')
  return c
