"""Every program lowered for an accelerator this machine lacks (jax.export), so that
"would it run on a TPU" is answered before anyone rents one.

For each model family with the kernel `auto` picks on the target (models.AUTO: Pallas
flash attention on a TPU, cuDNN on a GPU), in float32 and bfloat16, the train step, the
evaluation step and the one-token decode step are exported with
`jax.export.export(jax.jit(f), platforms=[target])`, data-parallel over an abstract mesh
the size of a pod slice (PODS: no devices needed), the Pallas kernel with its own
default block sizes. What this catches: an op with no lowering on the target, a Mosaic
kernel XLA cannot partition, a length the kernel's blocks do not divide (the program
then falls back to XLA: reported as a note), a batch the devices do not divide, and a
float64 leak (an f64 in the exported module). cuDNN kernels do not lower without the GPU
libraries: the check says so in one line and exports the XLA path in their place.

  python launch.py --only_check_args --target=tpu [--config=...]   # the sweep's points
  tests/test_export.py                                             # every family, in CI
"""
from __future__ import annotations

import contextlib
import dataclasses
import time

import jax
import numpy as np
from flax import nnx
from jax.sharding import AbstractMesh, AxisType, NamedSharding, PartitionSpec as P

from seqlab import models, train
from seqlab.data import tasks
from seqlab.models import vendor_kernels

TARGETS = ('tpu', 'cuda')
# pod slice -> the devices jax sees: a v5e chip is one device; a v4 chip (two
# TensorCores as one megacore) is one, so a v4-32 (32 cores) has 16.
PODS = {'v5e-8': 8, 'v4-32': 16}
STEPS = ('train', 'eval', 'decode')
DTYPES = ('float32', 'bfloat16')
FAMILIES = tuple(models.MODELS)
_AUTO_PLATFORM = {'tpu': 'tpu', 'cuda': 'gpu'}   # jax.export's name -> models.AUTO's


@dataclasses.dataclass
class Exported:
  target: str
  pod: str
  model: str
  kernel: str
  dtype: str
  step: str
  task: str
  seq_len: int
  ok: bool
  why: str = ''                     # the failure, one line
  notes: tuple[str, ...] = ()       # fallbacks taken while tracing
  vendor_call: bool = False         # the module holds the target's kernel call
  seconds: float = 0.0

  def line(self) -> str:
    what = (f'{self.target} {self.pod} {self.model}:{self.kernel} {self.dtype} {self.step} '
            f'({self.task}, T={self.seq_len})')
    if not self.ok:
      return f'FAILED {what}: {self.why}'
    extra = ('; vendor kernel call' if self.vendor_call else '') + ''.join(
        f'; note: {n}' for n in self.notes)
    return f'ok {what}{extra}'


@contextlib.contextmanager
def _target(platform: str):
  """vendor_kernels decides as if it ran on `platform` (its notes are collected)."""
  old_platform, old_noted = vendor_kernels.platform, set(vendor_kernels._NOTED)
  notes = []
  vendor_kernels.platform = lambda: platform
  vendor_kernels._NOTED.clear()
  real_note = vendor_kernels.note_once
  vendor_kernels.note_once = lambda key, text: notes.append(text) if text not in notes else None
  try:
    yield notes
  finally:
    vendor_kernels.platform, vendor_kernels.note_once = old_platform, real_note
    vendor_kernels._NOTED.clear()
    vendor_kernels._NOTED.update(old_noted)


def _abstract(tree, sharding):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding),
                      tree)


def graphdef_of(cfg):
  """The model's graph definition, built abstractly (no weights)."""
  return nnx.split(nnx.eval_shape(lambda: models.build(cfg, 0)), nnx.Param)[0]


def _programs(point, task, seq_len: int, mesh, step: str):
  """(function, abstract arguments) of one step of `point` over `mesh`."""
  cfg = train.model_config(point, task, seq_len)
  tx = train.make_optimizer(point.train)
  repl, rows = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
  graphdef = graphdef_of(cfg)
  state = _abstract(jax.eval_shape(lambda: train.init_state(cfg, 0, tx)[1]), repl)
  batch_size = int(point.train.batch_size)
  batch = {k: jax.ShapeDtypeStruct(np.shape(v), np.asarray(v).dtype, sharding=rows)
           for k, v in task.batch(0, 0, batch_size, seq_len).items()}
  if step == 'train':
    fn = train.make_train_step(graphdef, task, tx)
    return jax.jit(train.under_mesh(mesh, fn), donate_argnums=0), (state, batch)
  if step == 'eval':
    return jax.jit(train.under_mesh(mesh, train.make_eval_step(graphdef, task))), (
        state['params'], batch)
  cache = _abstract(jax.eval_shape(
      lambda: models.build(cfg, 0).init_cache(batch_size, cfg.max_len)), repl)
  cache = dict(cache, state=jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rows if x.ndim else repl),
      cache['state']))
  token = jax.ShapeDtypeStruct((batch_size,), np.int32, sharding=rows)

  def decode(params, token_B, cache):
    return models.merge(graphdef, params).decode(token_B, cache)

  return jax.jit(train.under_mesh(mesh, decode), donate_argnums=2), (
      state['params'], token, cache)


def _first_line(e: BaseException) -> str:
  text = ' '.join(str(e).split())
  return f'{type(e).__name__}: {text[:240]}'


def export_point(point, target: str, pod: str, step: str) -> Exported:
  """One step of one point (a config with model.name, model.kernel, model.dtype,
  task.name and task.seq_len set) exported for `target` over `pod`'s devices."""
  name, kernel, dtype = point.model.name, point.model.kernel, point.model.dtype
  seq_len = int(point.task.seq_len)
  result = Exported(target, pod, name, kernel, dtype, step, point.task.name, seq_len, False)
  task = tasks.build(point.task)
  if step == 'decode' and task.readout != 'per_step':
    result.ok, result.why = True, 'no decode step: the task reads out the last state only'
    return result
  mesh = AbstractMesh((PODS[pod],), ('data',), axis_types=(AxisType.Auto,))
  if int(point.train.batch_size) % PODS[pod]:
    result.why = (f'train.batch_size={point.train.batch_size} does not divide over the '
                  f'{PODS[pod]} devices of a {pod}')
    return result
  t0 = time.perf_counter()
  with _target(_AUTO_PLATFORM[target]) as notes:
    try:
      fn, args = _programs(point, task, seq_len, mesh, step)
      module = jax.export.export(fn, platforms=[target])(*args).mlir_module()
    except Exception as e:   # every failure is reported, one line each
      result.why = _first_line(e)
      result.seconds = time.perf_counter() - t0
      return result
  result.seconds = time.perf_counter() - t0
  result.notes = tuple(notes)
  result.vendor_call = 'tpu_custom_call' in module or 'cudnn' in module
  if 'f64' in module:
    result.why = 'the exported module computes in float64 (a float64 leak)'
    return result
  result.ok = True
  return result


def with_kernel(point, model: str, dtype: str, target: str):
  """`point` for `model` (MODEL[:KERNEL][+VARIANT]) in `dtype`, its `auto` kernel
  resolved for `target`."""
  point = point.copy_and_resolve_references()
  base, kernel = models.split_name(models.split_variant(model)[0])
  with point.unlocked():
    point.model.name, point.model.dtype = base, dtype
    point.model.kernel = models.resolve_kernel(base, kernel, dtype, _AUTO_PLATFORM[target])
  return point


def xla_kernel(model: str) -> str:
  """The family's XLA kernel, in place of a vendor kernel that cannot lower here."""
  return 'jax' if model == 'transformer' else models.KERNELS[model][0]


def export_with_fallback(point, target: str, pod: str, step: str) -> list[Exported]:
  """export_point, and where a cuDNN kernel cannot lower here (no GPU libraries), one
  line that says so and the same step exported on the family's XLA path instead."""
  first = export_point(point, target, pod, step)
  if first.ok or point.model.kernel != 'cudnn':
    return [first]
  first.why = (f'cuDNN does not lower without the GPU libraries on this machine '
               f'({first.why[:120]}); checked the XLA path instead')
  fallback = point.copy_and_resolve_references()
  with fallback.unlocked():
    fallback.model.kernel = xla_kernel(point.model.name)
  return [first, export_point(fallback, target, pod, step)]


def check(points, targets=('tpu',), pods=tuple(PODS), dtypes=DTYPES,
          steps=STEPS) -> list[Exported]:
  """Every (point, target, pod, dtype, step) exported; `points` are point configs."""
  out = []
  for point in points:
    for target in targets:
      for dtype in dtypes:
        p = with_kernel(point, point.model.name if point.model.kernel == 'auto'
                        else f'{point.model.name}:{point.model.kernel}', dtype, target)
        for pod in pods:
          for step in steps:
            out.extend(export_with_fallback(p, target, pod, step))
  return out


def failures(results: list[Exported]) -> list[Exported]:
  """The results that failed, less cuDNN's no-GPU-libraries lines whose XLA path lowered."""
  bad = []
  for i, r in enumerate(results):
    fell_back = r.why.startswith('cuDNN does not lower') and i + 1 < len(results) \
        and results[i + 1].ok
    if not r.ok and not fell_back:
      bad.append(r)
  return bad
