"""Every kernel against its family's reference on the device at hand: outputs and
gradients of a small model (models.KERNELS: the first kernel of each family is the
reference), in a compute dtype. The device script (experiments/throughput.py:gpu) runs
this before timing anything, and a kernel that disagrees is not timed.

A vendor kernel on a platform it cannot serve runs its fallback (seqlab.models.
vendor_kernels) and its row says so: a CPU checks the routing and the fallback, a GPU or
TPU the real kernel.
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab import models
from seqlab.models import vendor_kernels

# A kernel agrees with its reference when the largest error of its outputs and gradients
# against the float32 reference, relative to the largest value, is at most F32_TOLERANCE
# (float32 kernels only reorder sums) or, in half precision, at most HALF_FACTOR times
# the reference kernel's own error in that dtype: as accurate as the reference is there.
F32_TOLERANCE = 1e-4
HALF_FACTOR = 2.0
SEQ_LEN = 128   # a multiple of 128: Pallas' TPU flash attention blocks


def serves(model: str, kernel: str, dtype: str, platform: str) -> bool:
  """Whether the kernel itself runs here (else its fallback does)."""
  if kernel == 'cudnn':
    return platform == 'gpu' and (model == 'lstm' or dtype in ('bfloat16', 'float16'))
  if kernel == 'pallas':
    return platform == 'tpu'
  return True


def _outputs_and_grads(model_name: str, kernel: str, dtype: str, hidden: int, batch: int):
  cfg = models.ModelConfig(name=model_name, kernel=kernel, hidden=hidden, layers=1, heads=2,
                           vocab_size=32, num_outputs=32, readout='per_step',
                           max_len=SEQ_LEN, dtype=dtype)
  graphdef, params = nnx.split(models.build(cfg, 0), nnx.Param)
  tokens = jax.random.randint(jax.random.key(1), (batch, SEQ_LEN), 0, 32)

  def loss(params):
    out = models.merge(graphdef, params)(tokens).astype(jnp.float32)
    return jnp.mean(jnp.sin(out)), out

  (_, out), grads = jax.jit(jax.value_and_grad(loss, has_aux=True))(params)
  return np.asarray(out, np.float32), [np.asarray(g, np.float32) for g in jax.tree.leaves(grads)]


def _rel_err(a, b) -> float:
  return float(np.max(np.abs(a - b)) / max(float(np.max(np.abs(b))), 1e-30))


def _errors(got, ref) -> tuple[float, float]:
  (out, grads), (ref_out, ref_grads) = got, ref
  return _rel_err(out, ref_out), max(_rel_err(g, r) for g, r in zip(grads, ref_grads))


def check(dtype: str = 'float32', hidden: int = 64, batch: int = 2) -> list[dict]:
  """One row per (model, kernel) that is not a reference: the largest relative error of
  its outputs and of its gradients against the float32 reference kernel's, the
  reference's own error in `dtype`, and whether the kernel agrees (see F32_TOLERANCE).
  Measured once per process for each (dtype, hidden, batch, platform, kernels)."""
  kernels = tuple(sorted((m, ks) for m, ks in models.KERNELS.items()))
  return [dict(r) for r in _check(dtype, hidden, batch, vendor_kernels.platform(), kernels)]


@functools.lru_cache(maxsize=8)
def _check(dtype: str, hidden: int, batch: int, platform: str, kernels_key) -> tuple:
  del kernels_key  # part of the cache key: a kernel registered later is checked too
  rows = []
  for model_name, kernels in models.KERNELS.items():
    ref32 = _outputs_and_grads(model_name, kernels[0], 'float32', hidden, batch)
    base = (0.0, 0.0) if dtype == 'float32' else _errors(
        _outputs_and_grads(model_name, kernels[0], dtype, hidden, batch), ref32)
    limit = [max(F32_TOLERANCE, HALF_FACTOR * b) for b in base]
    for kernel in kernels[1:]:
      row = dict(model=model_name, kernel=kernel, reference=kernels[0], dtype=dtype,
                 platform=platform, seq_len=SEQ_LEN, hidden=hidden, batch=batch,
                 served=serves(model_name, kernel, dtype, platform))
      try:
        got = _outputs_and_grads(model_name, kernel, dtype, hidden, batch)
      except Exception as e:  # e.g. XLA:CPU has no float16 dot with float32 accumulation
        rows.append(dict(row, ok=False, error=' '.join(str(e).split())[:200]))
        continue
      err_out, err_grad = _errors(got, ref32)
      rows.append(dict(row, rel_err_outputs=err_out, rel_err_grads=err_grad,
                       reference_rel_err_outputs=base[0], reference_rel_err_grads=base[1],
                       ok=bool(err_out <= limit[0] and err_grad <= limit[1])))
  return tuple(rows)


def table(rows: list[dict]) -> str:
  lines = ['| model | kernel | dtype | runs here | outputs rel. err (reference\'s) | '
           'gradients rel. err (reference\'s) | ok |', '|---|---|---|---|---|---|---|']
  for r in rows:
    errs = (f'{r["rel_err_outputs"]:.2e} ({r["reference_rel_err_outputs"]:.1e}) | '
            f'{r["rel_err_grads"]:.2e} ({r["reference_rel_err_grads"]:.1e})'
            if 'error' not in r else f'does not run: {r["error"][:80]} | -')
    lines.append(f'| {r["model"]} | {r["kernel"]} (vs {r["reference"]}) | {r["dtype"]} | '
                 f'{"kernel" if r["served"] else "fallback"} | {errs} | '
                 f'{"yes" if r["ok"] else "NO"} |')
  return '\n'.join(lines)
