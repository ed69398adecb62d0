"""A lower bound on an accelerator's step time, before anyone rents one: the step's FLOPs
and the bytes it must move through device memory, against the chip's published peaks.

  time >= max(FLOPs / peak FLOP/s, bytes / HBM bytes/s)

FLOPs are counted on the step's jaxpr (`count`), not by XLA's cost_analysis(), which
counts a scan's body once: a scan's body counts `length` times, a Pallas kernel's body
once per grid point, a cond its costliest branch, a matmul 2 FLOPs a multiply-add, every
other arithmetic op one a result element. The bytes are those no schedule avoids: the
step's arguments read and its results written once, and for a train step the residuals
the backward pass needs (written by the forward pass, read back; from jax.vjp's
residuals, less the weights already counted). Everything is counted per device, on the
program one device runs under data parallelism (the global batch over the devices); the
gradients' all-reduce is not counted.

What the bound leaves out, and why a measured step will be slower: a scan's steps run
one after another (`sequential` counts them: about 2 x T x layers for a train step),
each with a launch and loop cost the roofline does not see; this dominates small
recurrent models, so read their bound as the floor it is. The device script
(experiments/throughput.py:gpu) prints measured against predicted where a device is lent.
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.extend  # noqa: F401  (jax.extend.core: the jaxpr types walked below)
import numpy as np

# Published per-chip peaks. float32 matmuls at JAX's default precision run as one
# bfloat16 pass on a TPU and as TF32 on a Hopper GPU (docs.jax.dev, "Matmul precision"),
# so a float32 step is bounded by those peaks. GPU figures are dense (the datasheets'
# headline numbers with sparsity, halved).
@dataclasses.dataclass(frozen=True)
class Chip:
  name: str
  bf16_flops: float        # FLOP/s
  f32_flops: float         # FLOP/s at JAX's default float32 matmul precision
  hbm_bytes_s: float       # bytes/s
  hbm_bytes: float         # device memory
  source: str


CHIPS = {
    'v5e': Chip('TPU v5e', 197e12, 197e12, 819e9, 16e9,
                'cloud.google.com/tpu/docs/v5e: 197 TFLOP/s bf16, 16 GB HBM2 at 819 GB/s'),
    'v4': Chip('TPU v4', 275e12, 275e12, 1200e9, 32 * 2**30,
               'cloud.google.com/tpu/docs/v4: 275 TFLOP/s bf16, 32 GiB HBM2 at 1200 GB/s'),
    'h100': Chip('NVIDIA H100 SXM', 989.4e12, 494.7e12, 3.35e12, 80e9,
                 'NVIDIA H100 datasheet (SXM): 989 TFLOP/s bf16 and 495 TF32 dense, '
                 '80 GB HBM3 at 3.35 TB/s'),
    'h200': Chip('NVIDIA H200 SXM', 989.4e12, 494.7e12, 4.8e12, 141e9,
                 'NVIDIA H200 datasheet (SXM): H100\'s compute, 141 GB HBM3e at 4.8 TB/s'),
}
# target -> (chip, devices): a v4-32 has 16 chips (two TensorCores each, one device)
TARGETS = {'v5e-8': ('v5e', 8), 'v4-32': ('v4', 16), 'h100': ('h100', 1), 'h200': ('h200', 1)}


def chip_of(device_kind: str) -> str | None:
  """CHIPS' key for a jax device_kind ('TPU v5 lite', 'TPU v4', 'NVIDIA H100 80GB HBM3')."""
  kind = device_kind.lower()
  for key, words in (('v5e', ('v5 lite', 'v5e')), ('v4', ('tpu v4',)), ('h200', ('h200',)),
                     ('h100', ('h100',))):
    if any(w in kind for w in words):
      return key
  return None


# ------------------------------------------------------------------------- counting
# Ops that move or relabel data and compute nothing.
_FREE = frozenset("""
    reshape broadcast_in_dim transpose squeeze expand_dims slice dynamic_slice
    dynamic_update_slice concatenate pad gather scatter copy copy_p convert_element_type
    iota select_n stop_gradient bitcast_convert_type rev tile get swap load store
    program_id num_programs device_put pvary sharding_constraint mesh_cast
    """.split())


@dataclasses.dataclass
class Cost:
  flops: float = 0.0
  sequential: int = 0        # scan steps that run one after another
  whiles: int = 0            # while loops whose trip count is unknown (counted once)

  def add(self, other: 'Cost') -> None:
    self.flops += other.flops
    self.sequential += other.sequential
    self.whiles += other.whiles


def _size(aval) -> int:
  return int(np.prod(aval.shape)) if hasattr(aval, 'shape') else 1


def _subjaxprs(params):
  for v in params.values():
    for sub in (v if isinstance(v, (tuple, list)) else (v,)):
      if isinstance(sub, jax.extend.core.ClosedJaxpr):
        yield sub.jaxpr
      elif isinstance(sub, jax.extend.core.Jaxpr):
        yield sub


def _count(jaxpr) -> Cost:
  cost = Cost()
  for e in jaxpr.eqns:
    name, params = e.primitive.name, e.params
    if name == 'dot_general':
      (lhs_contract, _), _ = params['dimension_numbers']
      k = math.prod(e.invars[0].aval.shape[d] for d in lhs_contract)
      cost.flops += 2.0 * _size(e.outvars[0].aval) * k
    elif name == 'scan':
      body = _count(params['jaxpr'].jaxpr)
      n = int(params['length'])
      cost.flops += n * body.flops
      cost.sequential += n * max(body.sequential, 1)
      cost.whiles += body.whiles
    elif name == 'while':
      body = _count(params['body_jaxpr'].jaxpr)
      cost.add(body)
      cost.whiles += 1
    elif name == 'cond':
      branches = [_count(b.jaxpr) for b in params['branches']]
      worst = max(branches, key=lambda c: c.flops)
      cost.add(worst)
    elif name == 'pallas_call':
      grid = math.prod(int(g) for g in params['grid_mapping'].grid)
      body = _count(params['jaxpr'])   # its loops run inside the kernel: not in sequence
      cost.flops += grid * body.flops
    elif any(True for _ in _subjaxprs(params)):
      for sub in _subjaxprs(params):   # jit, remat, custom_vjp/jvp, shard_map, ...
        cost.add(_count(sub))
    elif name.startswith('reduce_') or name in ('argmax', 'argmin', 'cumsum', 'cumprod',
                                                 'cummax', 'cumlogsumexp'):
      cost.flops += sum(_size(v.aval) for v in e.invars)
    elif name not in _FREE:
      cost.flops += sum(_size(v.aval) for v in e.outvars)
  return cost


def count(fn, *args) -> Cost:
  """The FLOPs (and sequential scan steps) of fn(*args), args arrays or ShapeDtypeStructs."""
  return _count(jax.make_jaxpr(fn)(*args).jaxpr)


def nbytes(tree) -> int:
  return int(sum(_size(x) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)))


# ------------------------------------------------------------------------ one step
@dataclasses.dataclass
class StepCost:
  step: str
  devices: int
  batch: int                 # examples a device runs
  flops: float
  bytes: float               # HBM traffic no schedule avoids
  memory: float              # bytes a device holds at least (arguments + residuals)
  sequential: int
  whiles: int
  dtype: str
  kernel: str = ''           # the kernel the point runs
  counted: str = ''          # the kernel counted (cuDNN's is counted on its XLA path)

  def fits(self, chip: str) -> bool:
    return self.memory <= CHIPS[chip].hbm_bytes

  def _terms(self, chip: str) -> tuple[float, float]:
    """(seconds at the chip's peak FLOP/s, seconds at its HBM bandwidth)."""
    c = CHIPS[chip]
    peak = c.bf16_flops if self.dtype in ('bfloat16', 'float16') else c.f32_flops
    return self.flops / peak, self.bytes / c.hbm_bytes_s

  def seconds(self, chip: str) -> float:
    return max(self._terms(chip))

  def bound(self, chip: str) -> str:
    """'compute' or 'memory': which term of the roofline is the larger."""
    compute, memory = self._terms(chip)
    return 'compute' if compute >= memory else 'memory'


def _step_cost(fn, args, loss=None, loss_args=(), **fields) -> StepCost:
  """The StepCost of fn(*args). loss: what its backward pass differentiates, at
  loss_args = (params, *rest); the residuals it reads are jax.vjp's pullback leaves less
  the weights (already among the arguments). None: no backward pass."""
  cost, out = count(fn, *args), jax.eval_shape(fn, *args)
  residuals = 0
  if loss is not None:
    pullback = jax.eval_shape(lambda p, *rest: jax.vjp(lambda q: loss(q, *rest), p)[1],
                              *loss_args)
    residuals = max(nbytes(pullback) - nbytes(loss_args[0]), 0)
  return StepCost(flops=cost.flops, bytes=nbytes(args) + nbytes(out) + 2 * residuals,
                  memory=nbytes(args) + residuals, sequential=cost.sequential,
                  whiles=cost.whiles, **fields)


def step_cost(point, task, seq_len: int, devices: int = 1, step: str = 'train',
              platform: str = 'tpu') -> StepCost:
  """The per-device cost of one step of `point` data-parallel over `devices`, traced as
  it would run on `platform` ('tpu' or 'gpu': which kernel `auto` and the kernels'
  fallbacks pick)."""
  from jax.sharding import AbstractMesh, AxisType
  from seqlab import train
  from seqlab.measure import export
  batch = int(point.train.batch_size)
  if batch % devices:
    raise ValueError(f'train.batch_size={batch} does not divide over {devices} devices')
  local = point.copy_and_resolve_references()
  with local.unlocked():
    local.train.batch_size = batch // devices
    if local.model.kernel == 'cudnn':   # no cuDNN here to trace: the same math on XLA
      local.model.kernel = export.xla_kernel(local.model.name)
  mesh = AbstractMesh((1,), ('data',), axis_types=(AxisType.Auto,))
  with export._target(platform):
    fn, args = export._programs(local, task, seq_len, mesh, step)
    loss, loss_args = None, ()
    if step == 'train':   # args: (state, batch)
      loss_fn = train.make_loss_fn(
          export.graphdef_of(train.model_config(local, task, seq_len)), task)
      loss = train.under_mesh(mesh, lambda params, batch: loss_fn(params, batch)[0])
      loss_args = (args[0]['params'], args[1])
    return _step_cost(fn, args, loss, loss_args, step=step,
                      devices=devices, batch=batch // devices,
                      dtype=str(point.model.get('dtype', 'float32')),
                      kernel=str(point.model.kernel), counted=str(local.model.kernel))


def target_costs(point, task, seq_len: int, targets) -> dict[str, StepCost]:
  """{target: its train step's StepCost} for targets of TARGETS; targets that split the
  batch alike on one platform (one H100, one H200) share one count."""
  costs, done = {}, {}
  for t in targets:
    chip, devices = TARGETS[t]
    key = (devices, 'gpu' if chip.startswith('h') else 'tpu')
    if key not in done:
      done[key] = step_cost(point, task, seq_len, devices, 'train', key[1])
    costs[t] = done[key]
  return costs


PLATFORM_TARGETS = {'tpu': ('v5e-8', 'v4-32'), 'cuda': ('h100', 'h200')}


def fmt_seconds(s: float) -> str:
  return f'{s * 1e6:.3g} us' if s < 1e-3 else f'{s * 1e3:.3g} ms' if s < 1 else f'{s:.3g} s'


def check(points, target: str, say=print, names=None) -> list[str]:
  """For `target` ('tpu' or 'cuda'), each point's train-step bound on each of its chips
  (PLATFORM_TARGETS), said one line each; returns the lines of the points that cannot
  fit a chip (the memory a device must hold at least is over its HBM), each with what
  would fit instead. names: each
  point's model as the sweep names it (MODEL[:KERNEL][+VARIANT])."""
  from seqlab.data import tasks
  from seqlab.measure import export, memory
  too_big = []
  for i, point in enumerate(points):
    p = export.with_kernel(point, point.model.name if point.model.kernel == 'auto'
                           else f'{point.model.name}:{point.model.kernel}',
                           point.model.get('dtype', 'float32'), target)
    task, seq_len = tasks.build(p.task), int(p.task.seq_len)
    costs = target_costs(p, task, seq_len, PLATFORM_TARGETS[target])
    for t, cost in costs.items():
      chip = TARGETS[t][0]
      c = CHIPS[chip]
      name = names[i] if names else p.model.name
      kernel = f'{cost.kernel} kernel' + ('' if cost.counted == cost.kernel else
                                          f', counted on its {cost.counted} path')
      line = (f'{name} ({kernel}) on {p.task.name} at T={seq_len}, {t} '
              f'({cost.batch} examples a chip): train step >= {fmt_seconds(cost.seconds(chip))} '
              f'({cost.bound(chip)}-bound: {cost.flops:.3g} FLOPs, {cost.bytes / 1e9:.3g} GB '
              f'moved), holds >= {cost.memory / 1e9:.3g} GB of {c.hbm_bytes / 1e9:.3g} GB')
      if cost.sequential:
        line += f'; {cost.sequential:,} scan steps in sequence, whose latency is not counted'
      if cost.whiles:
        line += f'; {cost.whiles} while loops counted once (their trip count is unknown)'
      say(f'roofline: {line}')
      if not cost.fits(chip):
        too_big.append(f'{line}; {memory.advice(p, cost.kernel)}')
  return too_big


def predict(fn, args, loss_fn, loss_args, dtype: str, device_kind: str) -> dict:
  """The roofline fields of a benchmark row: one device's train step `fn(*args)`, whose
  backward pass differentiates `loss_fn(params, *rest)` at loss_args; the predicted step
  time where `device_kind` is a chip of CHIPS (else None)."""
  step = _step_cost(fn, args, loss_fn, loss_args, step='train', devices=1, batch=0,
                    dtype=dtype)
  chip = chip_of(device_kind)
  return dict(roofline_flops=step.flops, roofline_bytes=step.bytes,
              roofline_sequential=step.sequential, roofline_chip=chip,
              predicted_step_ms=None if chip is None else 1e3 * step.seconds(chip))
