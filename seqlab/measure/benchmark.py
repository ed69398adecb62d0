"""Throughput of one layer of each model: train-step and inference tokens/s, step
time, compile time, peak memory and FLOPs, against sequence length T.

Shape letters: B batch, T time, D width (= hidden H), G gate width.

A benchmark *layer* maps e [B, T, D] -> h [B, T, D] with loss mean(h^2):
  recurrent names ('lstm', 'gru', 'rnn', 'lru', ...): models.MODELS backbone, one layer;
    'MODEL:KERNEL' picks one of models.KERNELS[MODEL] (e.g. 'lstm:fused', 'lru:sequential').
  'attention[:KERNEL]': the multi-head attention layer (qkv and output projections
    around the transformer's kernel); 'transformer[:KERNEL]' is a full pre-LN block.
Baselines, same shapes: 'flax_lstm' (nnx.RNN over nnx.OptimizedLSTMCell),
'jax_attention' (jax.nn.dot_product_attention), and when torch is importable
'torch_lstm' (torch.nn.LSTM) and 'torch_sdpa' (F.scaled_dot_product_attention).
Train step = forward + backward + optax Adam update; inference = forward.
A JAX layer or baseline named with '@N' ('attention:blocked@2', 'jax_attention@2') is
the same layer with its batch split over N devices (data parallel: parameters
replicated, gradients summed across devices by XLA). On a CPU the launcher makes N
devices of one host with config.cpu_devices, and XLA runs each device's program on its
own thread: that puts both cores to work on the ops XLA:CPU runs on one thread, such
as a batched dot_general (attention's per-head products; see matmul_ceilings).
Times are the median of `steps` timed calls after warm-up (each call's time kept in
step_ms_samples), each ended by block_until_ready; compile time is jit().lower().compile()
timed alone once the inputs are ready, with jax's persistent compilation cache off.
"""
from __future__ import annotations

import dataclasses
import os
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from seqlab import models
from seqlab.infra import sharding, storage
from seqlab.measure import roofline
from seqlab.models import attention

Array = jax.Array
BASELINES = ('flax_lstm', 'jax_attention', 'torch_lstm', 'torch_sdpa')


@dataclasses.dataclass(frozen=True)
class BenchConfig:
  hidden: int = 256          # D = H
  heads: int = 4             # attention heads (head size D / heads)
  batch: int = 32            # B
  steps: int = 10            # timed steps (median)
  warmup: int = 2            # untimed steps after compile
  max_step_s: float = 5.0    # a warm-up step slower than this records 'timeout'
  unroll: int = 4            # lax.scan unroll of every recurrent layer, flax's included
  dtype: str = 'float32'     # compute dtype (models.DTYPES); parameters and Adam in float32
  check_backends: bool = False   # the study first checks every kernel (measure.backends)


# ------------------------------------------------------------------------------ layers
class _FlaxLSTM(nnx.Module):
  def __init__(self, d, unroll, rngs):
    self.rnn = nnx.RNN(nnx.OptimizedLSTMCell(d, d, rngs=rngs), unroll=unroll)

  def __call__(self, e):
    zeros_BxH = jnp.zeros((e.shape[0], self.rnn.cell.hidden_features), e.dtype)
    return self.rnn(e, initial_carry=(zeros_BxH, zeros_BxH))   # (c, h), no rng draw


class _Attention(nnx.Module):
  def __init__(self, d, heads, impl, rngs):
    self.attn = attention.MultiHeadAttention(d, heads, rngs=rngs, impl=impl)

  def __call__(self, e):
    return self.attn(e, causal=True)


class _Block(nnx.Module):
  def __init__(self, d, heads, impl, rngs):
    self.block = attention.Block(d, heads, 4, rngs=rngs, impl=impl)

  def __call__(self, e):
    return self.block(e, causal=True)


def split_dtype(name: str, default: str = 'float32') -> tuple[str, str]:
  """'lstm:fused/bfloat16' -> ('lstm:fused', 'bfloat16'): a layer measured in another
  compute dtype than bench.dtype (parameters and Adam stay float32)."""
  layer, slash, dtype = name.partition('/')
  if slash and dtype not in models.DTYPES:
    raise ValueError(f'model {name!r}: the dtype after / must be one of '
                     f'{", ".join(models.DTYPES)}, e.g. lstm:fused/bfloat16')
  return layer, dtype if slash else default


def split_devices(name: str) -> tuple[str, int]:
  """'attention:blocked@2' -> ('attention:blocked', 2): the layer, and the number of
  devices its batch is split over (1 without '@')."""
  layer, at, n = name.partition('@')
  if not at:
    return name, 1
  if not n.isdigit() or int(n) < 1:
    raise ValueError(f'model {name!r}: the device count after @ must be an integer >= 1, '
                     f'e.g. attention:blocked@2')
  return layer, int(n)


def build_layer(name: str, bc: BenchConfig) -> nnx.Module:
  rngs = nnx.Rngs(0)
  if name == 'flax_lstm':
    return _FlaxLSTM(bc.hidden, bc.unroll, rngs)
  if name == 'jax_attention':
    return _Attention(bc.hidden, bc.heads, 'jax', rngs)
  base, kernel = models.split_name(name)
  if base in ('attention', 'transformer'):   # one layer: the transformer's kernels
    impl = models.resolve_kernel('transformer', kernel, bc.dtype)
    return (_Attention(bc.hidden, bc.heads, impl, rngs) if base == 'attention' else
            _Block(bc.hidden, bc.heads, impl, rngs))
  cfg = models.ModelConfig(name=base, hidden=bc.hidden, unroll=bc.unroll, kernel=kernel)
  return models.backbone(cfg, rngs)


# --------------------------------------------------------------------------- FLOPs
def flops_per_token(name: str, bc: BenchConfig, seq_len: int) -> float:
  """Analytic forward FLOPs per token (2 per multiply-add); a train step is ~3x.

  Recurrent: input projection D x G plus recurrence H x G, G = gates x H.
  Attention: qkv 3 D^2 + output D^2 projections plus q k^T and p v, 2 T D each
  (halved under the causal mask, which the blocked kernel exploits).
  """
  d = bc.hidden
  base = split_devices(name)[0].split(':')[0]
  gates = {'lstm': 4, 'flax_lstm': 4, 'torch_lstm': 4, 'gru': 3, 'rnn': 1}.get(base)
  if gates is not None:
    return 2.0 * (d * gates * d + d * gates * d)
  if base in ('attention', 'jax_attention', 'torch_sdpa', 'transformer'):
    f = 2.0 * 4 * d * d + 2.0 * 2 * seq_len * d / 2
    if base == 'transformer':
      f += 2.0 * 2 * 4 * d * d
    return f
  return 2.0 * 2 * d * d   # other recurrences (lru, mingru): about two D x D products


def _rate(f, args, flops: float, reps: int, rounds: int = 3) -> tuple[float, float]:
  """(FLOP/s, cores busy) of jitted f: the best of `rounds` medians of reps calls each,
  after one warm-up call (a ceiling is the best the device does; one median swung 2-3x
  from process to process on a 2-core CPU, docs/performance.md)."""
  jax.block_until_ready(f(*args))
  best = (0.0, 0.0)
  for _ in range(rounds):
    cpu0, wall0 = time.process_time(), time.perf_counter()
    step_s = statistics.median(_times(f, args, BenchConfig(steps=reps, warmup=0)))
    best = max(best, (flops / step_s,
                      (time.process_time() - cpu0) / (time.perf_counter() - wall0)))
  return best


def matmul_ceilings(n: int = 1024, reps: int = 5) -> dict:
  """The device's float32 matrix-multiply FLOP/s, measured now, two ways:
  'ceiling': one n x n x n product, the device's best case;
  'batched_ceiling': 128 products of 128 x 64 x 128 in one dot_general, the shape of
    one block pair in blocked attention (B N = 128 heads, blocks of 128, head size 64).
  Each with the cores it kept busy (process CPU time / wall time; threads that
  spin-wait count as busy): XLA:CPU runs a batched dot_general on one thread and a 2-D
  product on all cores (docs/performance.md)."""
  a = jnp.ones((n, n), jnp.float32)
  ceiling, cores = _rate(jax.jit(lambda a: a @ a), (a,), 2.0 * n ** 3, reps)
  m, q, k = 128, 128, 64
  x = jnp.ones((m, q, k), jnp.float32)
  b_ceiling, b_cores = _rate(jax.jit(lambda x: jnp.einsum('mqk,mck->mqc', x, x)), (x,),
                             2.0 * m * q * q * k, 4 * reps)
  return dict(ceiling_flops_per_s=ceiling, ceiling_cores_busy=cores,
              batched_ceiling_flops_per_s=b_ceiling, batched_ceiling_cores_busy=b_cores)


# ---------------------------------------------------------------------------- timing
def _times(fn, args, bc: BenchConfig) -> list[float]:
  """Seconds of each of bc.steps calls of fn(*args) after bc.warmup (rows: the median)."""
  out = None
  for _ in range(bc.warmup):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    if time.perf_counter() - t0 > bc.max_step_s:
      raise TimeoutError(f'one step took {time.perf_counter() - t0:.1f} s > {bc.max_step_s}')
  times = []
  for _ in range(bc.steps):
    t0 = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    times.append(time.perf_counter() - t0)
  return times


def _memory_bytes(compiled) -> int | None:
  try:
    m = compiled.memory_analysis()
  except Exception:  # some backends do not implement it
    return None
  if m is None:
    return None
  return int(m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)


def device_memory_bytes() -> int | None:
  """Memory a program may use: the accelerator's limit, or on CPU the host's
  MemAvailable (/proc/meminfo). None when unknown."""
  dev = jax.devices()[0]
  if dev.platform != 'cpu':
    stats = dev.memory_stats() or {}
    return stats.get('bytes_limit')
  try:
    with open('/proc/meminfo') as f:
      for line in f:
        if line.startswith('MemAvailable:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return None


def _check_fits(compiled, devices: int = 1) -> None:
  """Refuses to run a program whose compiled peak memory exceeds 90% of what the device
  has: on CPU the kernel would otherwise kill the whole sweep, not just this point. A
  program split over `devices` CPU devices needs that many shares of the one host's
  memory; accelerators each have their own."""
  need, have = _memory_bytes(compiled), device_memory_bytes()
  if need is not None and jax.devices()[0].platform == 'cpu':
    need *= devices
  if need is not None and have is not None and need > 0.9 * have:
    raise MemoryError(f'needs {need / 2**30:.1f} GiB of memory (compiled peak), '
                      f'device has {have / 2**30:.1f} GiB available; not run')


def _compile_uncached(fn, *args):
  """jit(fn).lower(*args).compile(), never served from jax's persistent compilation
  cache: a report run turns that cache on for the grad_flow study in the same process,
  and a hit (~0.05 s) would be recorded as the compile time."""
  was = jax.config.jax_enable_compilation_cache
  jax.config.update('jax_enable_compilation_cache', False)
  try:
    return jax.jit(fn).lower(*args).compile()
  finally:
    jax.config.update('jax_enable_compilation_cache', was)


def jax_step(name: str, bc: BenchConfig, seq_len: int):
  """(train_step, infer, params, opt_state, e_BxTxD) of a JAX layer, unjitted, with
  the inputs placed: for 'name@N' the batch split over the first N devices and the
  parameters and optimiser state replicated on them (the jit follows the inputs'
  shardings)."""
  layer_name, devices = split_devices(name)
  layer = build_layer(layer_name, bc)
  graphdef, params, rest = nnx.split(layer, nnx.Param, ...)
  opt = optax.adam(1e-3)
  opt_state = opt.init(params)
  e_BxTxD = jax.random.normal(jax.random.key(0), (bc.batch, seq_len, bc.hidden))
  if devices > 1:
    mesh = sharding.make_mesh(devices)
    params, opt_state = jax.device_put((params, opt_state), sharding.replicated(mesh))
    e_BxTxD = jax.device_put(e_BxTxD, sharding.data_sharded(mesh))

  def loss_fn(params, e):
    out = models.merge(graphdef, params, rest, dtype=bc.dtype)(e.astype(bc.dtype))
    return jnp.mean(out.astype(jnp.float32) ** 2)

  def train_step(params, opt_state, e):
    loss, grads = jax.value_and_grad(loss_fn)(params, e)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  def infer(params, e):
    return models.merge(graphdef, params, rest, dtype=bc.dtype)(e.astype(bc.dtype))

  train_step.loss_fn = loss_fn   # what the roofline's backward pass differentiates
  return train_step, infer, params, opt_state, e_BxTxD


def measure_jax(name: str, bc: BenchConfig, seq_len: int) -> dict:
  train_step, infer, params, opt_state, e_BxTxD = jax_step(name, bc, seq_len)
  devices = split_devices(name)[1]
  # Dispatch is asynchronous: without this wait the input's generation (0.3 s at T=4096
  # here) ran on the same cores during the timed compile and was counted in compile_s.
  jax.block_until_ready((params, opt_state, e_BxTxD))
  t0 = time.perf_counter()
  train_c = _compile_uncached(train_step, params, opt_state, e_BxTxD)
  compile_s = time.perf_counter() - t0
  infer_c = _compile_uncached(infer, params, e_BxTxD)
  # A split program's memory analysis is one device's share: the row has all devices'.
  per_device = _memory_bytes(train_c)
  compiled = dict(compile_s=compile_s, peak_memory_bytes=per_device and per_device * devices)
  if devices == 1:   # the roofline bound of this device's step (seqlab/measure/roofline.py)
    compiled.update(roofline.predict(train_step, (params, opt_state, e_BxTxD),
                                     train_step.loss_fn, (params, e_BxTxD), bc.dtype,
                                     str(jax.devices()[0].device_kind)))
  try:
    _check_fits(train_c, devices)
    _check_fits(infer_c, devices)
    step_samples = _times(train_c, (params, opt_state, e_BxTxD), bc)
    infer_s = statistics.median(_times(infer_c, (params, e_BxTxD), bc))
  except (TimeoutError, MemoryError) as e:
    e.compiled = compiled   # an oom or timeout row still records what compiling measured
    raise
  return dict(step_samples=step_samples, infer_s=infer_s, **compiled)


def usable_cores() -> int:
  """CPU cores this process may run on: its affinity mask (so `taskset -c 0 python
  launch.py ...` is a one-core run), else os.cpu_count(). XLA sizes its thread pool
  the same way; the torch baselines get this many threads."""
  try:
    return len(os.sched_getaffinity(0))
  except AttributeError:   # not on Linux
    return os.cpu_count() or 1


def nproc_env() -> int | None:
  """NPROC from the environment, when a positive integer: XLA's CPU client sizes its
  thread pool by it (DefaultThreadPoolSize in xla/pjrt), so rows record it and the
  study prints a line when it is set (docs/performance.md has what it costs)."""
  try:
    n = int(os.environ.get('NPROC', ''))
  except ValueError:
    return None
  return n if n > 0 else None


def _row(name: str, bc: BenchConfig, seq_len: int) -> dict:
  """The fields every results line has, whatever its status."""
  return dict(model=name, seq_len=seq_len, batch=bc.batch, hidden=bc.hidden,
              device=str(jax.devices()[0].device_kind), devices=split_devices(name)[1],
              cpu_count=usable_cores(), nproc_env=nproc_env(),
              flops_per_token=flops_per_token(name, bc, seq_len))


def measure(name: str, bc: BenchConfig, seq_len: int, ceilings: dict) -> dict:
  """One results line; 'status' is ok, oom or timeout (the sweep goes on). ceilings:
  matmul_ceilings(), measured once per run. NAME[/DTYPE] measures in DTYPE."""
  layer, dtype = split_dtype(name, bc.dtype)
  bc = dataclasses.replace(bc, dtype=dtype)
  row = dict(_row(layer, bc, seq_len), model=name, dtype=dtype)
  try:
    if layer.startswith('torch_'):
      from seqlab.measure import torch_baselines
      m = torch_baselines.measure_torch(layer, bc, seq_len)
    else:
      m = measure_jax(layer, bc, seq_len)
  except TimeoutError as e:
    return {**row, 'status': 'timeout', 'error': str(e), **getattr(e, 'compiled', {})}
  except (MemoryError, RuntimeError) as e:  # XlaRuntimeError (RESOURCE_EXHAUSTED) is one
    if 'RESOURCE_EXHAUSTED' in str(e) or 'memory' in str(e).lower():
      return {**row, 'status': 'oom', 'error': str(e).splitlines()[0][:200],
              **getattr(e, 'compiled', {})}
    raise
  tokens, m['step_s'] = bc.batch * seq_len, statistics.median(m['step_samples'])
  if m.get('predicted_step_ms'):
    m['measured_over_predicted'] = 1e3 * m['step_s'] / m['predicted_step_ms']
  achieved = 3 * row['flops_per_token'] * tokens / m['step_s']
  return {**row, 'status': 'ok', 'step_ms': 1e3 * m['step_s'], 'infer_ms': 1e3 * m['infer_s'],
          'step_ms_samples': [float(f'{1e3 * x:.5g}') for x in m['step_samples']],
          'tokens_per_s_train': tokens / m['step_s'],
          'tokens_per_s_infer': tokens / m['infer_s'],
          'compile_s': m['compile_s'], 'peak_memory_bytes': m['peak_memory_bytes'],
          'flops_per_s_train': achieved,
          'fraction_of_matmul_ceiling': achieved / ceilings['ceiling_flops_per_s'], **ceilings,
          **{k: v for k, v in m.items() if k.startswith('roofline_')
             or k in ('predicted_step_ms', 'measured_over_predicted')}}


def add_baseline_ratios(rows: list[dict]) -> list[dict]:
  """Each ok row gets ratio_train_vs_<baseline> / ratio_infer_vs_<baseline> for every
  baseline measured at the same (seq_len, batch). A row split over N devices ('@N') is
  compared with the JAX baselines split the same way ('jax_attention@N'), and with the
  torch baselines as they are (torch uses every core through its own threads)."""
  ref = {(r['model'], r['seq_len'], r['batch']): r for r in rows if r.get('status') == 'ok'}
  for r in rows:
    if r.get('status') != 'ok':
      continue
    layer, slash, dtype = r['model'].partition('/')
    devices = split_devices(layer)[1]
    for b in BASELINES:   # the baseline at the same split and in the same dtype
      same_split = b if devices == 1 or b.startswith('torch_') else f'{b}@{devices}'
      base = ref.get((same_split + slash + dtype, r['seq_len'], r['batch']))
      if base is not None:
        r[f'ratio_train_vs_{b}'] = r['tokens_per_s_train'] / base['tokens_per_s_train']
        r[f'ratio_infer_vs_{b}'] = r['tokens_per_s_infer'] / base['tokens_per_s_infer']
  return rows


def predicted_timeout(name: str, bc: BenchConfig, seq_len: int, last) -> dict | None:
  """A 'timeout' row without running, when even linear growth from the model's last
  measured point (T0, step time s0) predicts s0 T / T0 > 2 max_step_s. Every model's
  step time grows at least linearly in T, so this only skips points that would time out;
  the row says it was predicted."""
  why = timeout_reason(last, seq_len, bc.max_step_s, 'T')
  return None if why is None else dict(_row(name, bc, seq_len), status='timeout', error=why)


def timeout_reason(last, size: int, max_step_s: float, axis: str) -> str | None:
  """Why not to run at `size`, when even linear growth from the last measured point
  (size0, seconds s0) predicts s0 size / size0 > 2 max_step_s; else None."""
  if last is None:
    return None
  t0, s0 = last
  predicted = s0 * size / t0
  if predicted <= 2 * max_step_s:
    return None
  return (f'predicted {predicted:.1f} s per step (>= {s0:.2f} s at {axis}={t0}, times '
          f'{size}/{t0}) > 2 x max_step_s={max_step_s}; not run')
