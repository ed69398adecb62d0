"""Throughput: train-step and inference tokens/s, step time, compile time and peak
memory of one layer of each model against sequence length T, with the baselines
(flax LSTM, jax.nn.dot_product_attention; torch.nn.LSTM and torch SDPA when torch
is installed: pip install -r requirements-bench.txt) measured in the same run.

  python launch.py --config=experiments/throughput.py          # T = 64 .. 16384
  python launch.py --config=experiments/throughput.py:quick    # T = 64, 256
  python launch.py --config=experiments/throughput.py --models=lstm,lstm:fused,flax_lstm
  python launch.py --config=experiments/throughput.py:scan     # lru/mingru scans vs lstm
  python launch.py --config=experiments/throughput.py:gpu      # the device script (GPU)
  python launch.py --config=experiments/throughput.py:tpu      # the same on a TPU VM

:gpu (:tpu: less the cuDNN kernels and torch) first checks every kernel against its
reference on the device, outputs and
gradients in float32 and bfloat16 (seqlab.measure.backends; a kernel that disagrees is
not timed, backends.jsonl and backends.md say why), then times each kernel and baseline
(torch on CUDA when installed: cuDNN's LSTM, its SDPA) at batch 32, width 1024, 8 heads,
T = 256 .. 65536, in float32 and in bfloat16 (NAME/bfloat16). On a CPU it runs the
vendor kernels' fallbacks (each says so once). On a chip seqlab has the peaks of (TPU
v5e, v4; H100, H200: seqlab/measure/roofline.py) every row also carries its step's
roofline bound, and the table prints measured against predicted (measured / roofline).
experiments/report.py:gpu runs it and then every training study's :quick config on the
device.

Batch 32, hidden 256, float32, 4 heads of 64, every recurrent scan unrolled 4x
(flax's too). 'attention:blocked@2' is the blocked layer with its batch split over the
2 CPU devices that cpu_devices=2 makes (data parallel; add e.g. jax_attention@2 with
--models). A point slower than bench.max_step_s per step is recorded as 'timeout'
(so is one whose linear extrapolation from the model's last point exceeds twice that,
without running it), one whose compiled peak memory exceeds the device's as 'oom'
(not run); that model is then not tried at longer T. Compile time is one
timed lower + compile of the train step. Expect recurrent step time to grow as T (slope ~1) and
attention's towards T^2, the fused LSTM faster than flax's, and the blocked attention
the only attention whose memory stays linear in T. Output: runs/throughput/results.jsonl
and runs/throughput/figures/throughput_{a,b,c}.{png,pdf}.
"""
import ml_collections

# recurrent side, attention side, then baselines. NAME[:KERNEL][@DEVICES]: '@2' splits
# the batch over 2 devices (seqlab/measure/benchmark.py); jax_attention@2, its baseline
# at the same split, is left out by default (75 s a sweep, at 1.06x jax_attention).
MODELS = ['rnn', 'gru', 'gru:fused', 'lstm', 'lstm:fused', 'lru:parallel', 'lru:sequential',
          'mingru:parallel', 'mingru:sequential', 'attention:einsum', 'attention:blocked',
          'attention:blocked@2', 'transformer', 'flax_lstm', 'torch_lstm', 'jax_attention',
          'torch_sdpa']


# The device script's layers: each kernel and baseline in float32 and bfloat16 (/DTYPE).
GPU_MODELS = [f'{m}{dt}' for dt in ('', '/bfloat16') for m in (
    'lstm', 'lstm:fused', 'lstm:cudnn', 'flax_lstm', 'torch_lstm', 'attention:blocked',
    'attention:cudnn', 'attention:pallas', 'jax_attention', 'torch_sdpa')]
# On a TPU: the same less the CUDA kernels and torch (a TPU VM has neither).
TPU_MODELS = [m for m in GPU_MODELS if 'cudnn' not in m and not m.startswith('torch_')]


def get_config(arg: str = ''):
  c = ml_collections.ConfigDict()
  c.study = 'throughput'
  c.num_devices = 1
  # CPU devices the launcher makes of this host before jax starts (0: jax's default, 1).
  # The '@2' models split their batch over 2 of them; every other model runs on one,
  # whose XLA thread pool still spans every core. No effect on a GPU or TPU.
  c.cpu_devices = 2
  c.bench = ml_collections.ConfigDict(dict(
      hidden=256, heads=4, batch=32, steps=10, warmup=2, unroll=4, max_step_s=4.0,
      dtype='float32',              # compute dtype of names without /DTYPE
      check_backends=False))        # first every kernel against its reference on the device
  c.sweep = ml_collections.ConfigDict(dict(
      models=list(MODELS), tasks=['none'], seeds=[0],
      seq_lens=[64, 256, 1024, 4096, 16384]))
  if arg == 'quick':
    c.sweep.seq_lens = [64, 256]
    c.bench.steps = 5                 # the median of 5 timed steps (10 at the other scales)
    c.bench.warmup = 1
  elif arg == 'scan':   # parallel vs sequential scans of the linear recurrences
    c.sweep.models = ['lstm', 'lru:sequential', 'lru:parallel', 'mingru:sequential',
                      'mingru:parallel']
    c.sweep.seq_lens = [1024, 8192]
    c.bench.update(dict(hidden=128, batch=8, steps=5, warmup=1, max_step_s=120.0))
  elif arg in ('gpu', 'tpu'):    # the device script: see the docstring
    c.cpu_devices = 0
    c.bench.update(dict(hidden=1024, heads=8, batch=32, steps=20, warmup=3, max_step_s=5.0,
                        check_backends=True))
    c.sweep.models = list(GPU_MODELS if arg == 'gpu' else TPU_MODELS)
    c.sweep.seq_lens = [256, 1024, 4096, 8192, 16384, 65536]
  elif arg not in ('', 'full'):
    raise ValueError(f'unknown throughput variant {arg!r}; allowed: quick, full, scan, gpu, '
                     f'tpu')
  return c
