"""Generation: per-token latency, tokens/s, prefill time and the bytes of the state or
KV cache against the context length, for recurrent models and the transformer, at
batch 1 and 32, with the no-cache baseline (re-running the prefix for every token).

  python launch.py --config=experiments/generation.py           # CPU: L = 64 .. 16384
  python launch.py --config=experiments/generation.py:quick     # L = 64 .. 4096 (report)
  python launch.py --config=experiments/generation.py:full      # GPU/TPU: L up to 131072

Character-level models (vocabulary 256), 2 layers, width 256, 4 heads, float32; the
transformer's prefill uses blocked attention (O(L) memory). Decode: the median of 16
greedy tokens after 2 warm-up tokens; a step or prefill over max_step_s is a 'timeout'
and that model is not tried at longer L. Expect the recurrent models' ms/token flat in L
(log-log slope ~0) and the transformer's growing (slope tending to 1) with its cache;
the transformer passes the LSTM's per-token cost at some L (marked on the figure).
Output: runs/generation/results.jsonl, table.md, figures/generation_{a,b,c}.{png,pdf}.
"""
import ml_collections

MODELS = ['lstm', 'gru', 'lru', 'mingru', 'transformer:blocked', 'transformer_rerun']


def get_config(arg: str = ''):
  c = ml_collections.ConfigDict()
  c.study = 'generation'
  c.num_devices = 1
  c.generation = ml_collections.ConfigDict(dict(
      hidden=256, layers=2, heads=4, steps=16, warmup=2, prefill_reps=2, max_step_s=2.0,
      dtype='float32'))
  c.sweep = ml_collections.ConfigDict(dict(
      models=list(MODELS), batches=(1, 32),   # a tuple: --config.sweep.batches='(1, 8)'
      seq_lens=[64, 256, 1024, 4096, 16384]))
  if arg == 'quick':
    c.sweep.seq_lens = [64, 256, 1024, 4096]
    c.generation.max_step_s = 1.0
  elif arg == 'full':
    c.sweep.seq_lens = [64, 256, 1024, 4096, 16384, 65536, 131072]
    c.generation.max_step_s = 10.0
  elif arg:
    raise ValueError(f'unknown generation variant {arg!r}; allowed: quick, full')
  return c
