"""The memory a sweep's train step needs, read from XLA's memory analysis of the
compiled step before anything runs, against what the device has: a point that cannot
fit is refused in one line (the bytes it needs, the bytes there are, what would fit)
before the workdir is touched, not after a RESOURCE_EXHAUSTED traceback mid-sweep.

Memory grows with T, so only the longest T of each (model, task) is compiled. A real
run compiles only those whose rough size (ROUGH: activations and attention weights
from the shapes alone) is over ROUGH_FRACTION of the device's memory; far below it, a
point fits even if the rough size is off a hundredfold, and the run pays no extra
compile. `--only_check_args` compiles every one and prints what each needs.
"""
from __future__ import annotations

import os

import jax

from seqlab import models, sweep, train
from seqlab.data import tasks
from seqlab.infra import sharding

ROUGH_FRACTION = 0.01


def fmt_bytes(n: float) -> str:
  for unit in ('B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'):
    if abs(n) < 1024 or unit == 'PiB':
      return f'{n:.3g} {unit}' if unit != 'B' else f'{int(n)} B'
    n /= 1024
  return f'{n:.3g} PiB'


def device_bytes(device=None) -> tuple[int, str]:
  """(bytes one device can hold, what they are): an accelerator's own limit, or the
  host memory available now for a CPU."""
  device = device or jax.local_devices()[0]
  stats = device.memory_stats() if hasattr(device, 'memory_stats') else None
  if stats and stats.get('bytes_limit'):
    return int(stats['bytes_limit']), f'the {device.device_kind} device\'s memory'
  avail = os.sysconf('SC_AVPHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')
  return int(avail), 'the memory available on this host'


def longest_points(config) -> list[dict]:
  """The longest T of each (model, task) of the sweep (seed 0, the config's lr)."""
  sw = config.sweep
  T = max(int(n) for n in sw.seq_lens)
  return [dict(model=m, task=t, seq_len=T, seed=0) for t in sw.tasks for m in sw.models]


def rough_bytes(point, task, seq_len: int) -> float:
  """Activations a train step keeps for the backward pass, from the shapes alone:
  B x tokens x width x layers x 16 floats, plus B x heads x T^2 attention weights a
  layer for the einsum kernel (the blocked and vendor kernels hold O(T))."""
  cfg = train.model_config(point, task, seq_len)
  tokens, batch = task.input_len(seq_len) + 1, int(point.train.batch_size)
  layers = max(int(getattr(cfg, 'layers', 1) or 1), 1)
  size = 4.0 * batch * tokens * cfg.hidden * layers * 16
  if _einsum_attention(point):
    size += 4.0 * batch * cfg.heads * tokens * tokens * layers * 3
  return size


def step_bytes(point, task, seq_len: int, mesh) -> int:
  """Bytes one device holds while the train step runs (arguments, outputs and XLA's
  temporaries, less the donated state), from the compiled step's memory analysis."""
  from seqlab.measure import export
  fn, args = export._programs(point, task, seq_len, mesh, 'train')
  ma = fn.lower(*args).compile().memory_analysis()
  return int(ma.argument_size_in_bytes + ma.output_size_in_bytes + ma.temp_size_in_bytes
             - ma.alias_size_in_bytes)


def _einsum_attention(point) -> bool:
  """Whether the point's attention holds its T x T weights (the einsum kernel)."""
  m = point.model
  return m.name == 'transformer' and models.resolve_kernel(
      m.name, m.kernel, m.get('dtype', 'float32')) == 'einsum'


def advice(point, kernel: str | None = None) -> str:
  """What would fit instead. kernel: the one the point runs (default: its kernel here);
  every attention kernel but the blocked one holds T x T weights somewhere."""
  m = point.model
  kernel = kernel or models.resolve_kernel(m.name, m.kernel, m.get('dtype', 'float32'))
  if m.name == 'transformer' and kernel != 'blocked':
    return ('use --models=transformer:blocked (attention in O(T) memory), a shorter '
            'seq_len or a smaller train.batch_size')
  return 'use a shorter seq_len, a smaller train.batch_size or a smaller model.hidden'


def check(config, every: bool = False, say=None) -> list[tuple[str, int]]:
  """Raises sweep.ConfigError for the first point whose train step does not fit one
  device; returns (point, bytes needed) of each point compiled. every: compile every
  longest point (--only_check_args), not only those whose rough size is large."""
  if not all(k in config for k in ('sweep', 'train', 'task', 'model')) \
      or not config.sweep.get('seq_lens'):
    return []
  limit, what = device_bytes()
  mesh = sharding.make_mesh(config.get('num_devices', 0) or None)
  out = []
  for p in longest_points(config):
    point = sweep.point_config(config, p)
    task = tasks.build(point.task)
    if not every and rough_bytes(point, task, p['seq_len']) < ROUGH_FRACTION * limit:
      continue
    need = step_bytes(point, task, p['seq_len'], mesh)
    name = f'{p["model"]} on {p["task"]} at T={p["seq_len"]}'
    out.append((name, need))
    if say:
      say(f'memory: {name}: the train step needs {fmt_bytes(need)} a device '
          f'(batch {point.train.batch_size} over {mesh.size}); {what}: {fmt_bytes(limit)}')
    if need > limit:
      raise sweep.ConfigError(
          f'{name} cannot fit: its train step needs {fmt_bytes(need)} a device (XLA\'s '
          f'memory analysis of the compiled step), {what} is {fmt_bytes(limit)}; '
          f'{advice(point)}')
  return out
