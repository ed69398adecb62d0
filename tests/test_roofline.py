"""The roofline bound (seqlab/measure/roofline.py): FLOPs counted on the jaxpr agree with
XLA's own count where XLA counts right, a scan counts its body `length` times (XLA's
cost_analysis counts it once), a Pallas kernel once per grid point, a cond its costliest
branch; the bound is the larger of the two roofline terms; a step's residuals are what
its kernel saves; a point no chip can hold is refused before anything runs."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqlab.data import tasks
from seqlab.measure import roofline
from tests.test_launch import launch
from tests.test_memory import tiny

B, H, T = 4, 8, 6


def _xla_flops(f, *args) -> float:
  cost = jax.jit(f).lower(*args).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, list) else cost
  return float(cost['flops'])


def test_a_matmul_is_two_flops_a_multiply_add_as_xla_counts_it():
  x, w = jnp.ones((B, 5)), jnp.ones((5, H))
  f = lambda x, w: x @ w
  assert roofline.count(f, x, w).flops == 2 * B * 5 * H == _xla_flops(f, x, w)


def test_a_scan_counts_its_body_length_times_like_the_unrolled_program():
  h, w = jnp.ones((B, H)), jnp.ones((H, H))

  def scanned(h, w):
    return jax.lax.scan(lambda h, _: (h @ w, None), h, None, length=T)[0]

  def unrolled(h, w):
    for _ in range(T):
      h = h @ w
    return h

  counted = roofline.count(scanned, h, w)
  assert counted.flops == T * 2 * B * H * H == _xla_flops(unrolled, h, w)
  assert counted.sequential == T and roofline.count(unrolled, h, w).sequential == 0
  # nested: the inner body runs T x 3 times, all in sequence
  nested = lambda h, w: jax.lax.scan(lambda h, _: (scanned(h, w), None), h, None, length=3)[0]
  assert roofline.count(nested, h, w).flops == 3 * T * 2 * B * H * H
  assert roofline.count(nested, h, w).sequential == 3 * T


def test_a_cond_counts_its_costliest_branch():
  x, w = jnp.ones((B, H)), jnp.ones((H, H))
  f = lambda p, x, w: jax.lax.cond(p, lambda: x @ w @ w, lambda: x @ w)
  assert roofline.count(f, True, x, w).flops == 2 * (2 * B * H * H)


def test_a_pallas_kernel_counts_its_body_once_a_grid_point():
  from jax.experimental import pallas as pl
  m = n = k = 16

  def kernel(x_ref, y_ref, o_ref):
    o_ref[...] = x_ref[...] @ y_ref[...]

  def f(x, y):
    return pl.pallas_call(
        kernel, grid=(2, 2), out_shape=jax.ShapeDtypeStruct((2 * m, 2 * n), jnp.float32),
        in_specs=[pl.BlockSpec((m, k), lambda i, j: (i, 0)),
                  pl.BlockSpec((k, n), lambda i, j: (0, j))],
        out_specs=pl.BlockSpec((m, n), lambda i, j: (i, j)), interpret=True)(x, y)

  x, y = jnp.ones((2 * m, k)), jnp.ones((k, 2 * n))
  assert roofline.count(f, x, y).flops == 2 * (2 * m) * (2 * n) * k
  np.testing.assert_allclose(f(x, y), x @ y)   # the kernel is the matmul counted


def test_the_bound_is_the_larger_roofline_term():
  v5e = roofline.CHIPS['v5e']
  compute = roofline.StepCost('train', 1, 1, flops=197e12, bytes=1e9, memory=1, sequential=0,
                              whiles=0, dtype='bfloat16')
  assert compute.seconds('v5e') == pytest.approx(1.0) and compute.bound('v5e') == 'compute'
  memory = roofline.StepCost('train', 1, 1, flops=1e9, bytes=2 * v5e.hbm_bytes_s, memory=1,
                             sequential=0, whiles=0, dtype='float32')
  assert memory.seconds('v5e') == pytest.approx(2.0) and memory.bound('v5e') == 'memory'
  # float32 on a Hopper GPU is bounded by TF32, half the bf16 peak
  f32 = roofline.StepCost('train', 1, 1, 494.7e12, 0, 1, 0, 0, 'float32')
  assert f32.seconds('h100') == pytest.approx(1.0)
  assert not roofline.StepCost('train', 1, 1, 0, 0, 17e9, 0, 0, 'float32').fits('v5e')


def test_device_kinds_map_to_chips():
  assert roofline.chip_of('TPU v5 lite') == 'v5e' and roofline.chip_of('TPU v4') == 'v4'
  assert roofline.chip_of('NVIDIA H100 80GB HBM3') == 'h100'
  assert roofline.chip_of('NVIDIA H200') == 'h200' and roofline.chip_of('cpu') is None


def _point(config, model, kernel='auto', dtype='float32'):
  from seqlab import sweep
  from seqlab.measure import export
  p = sweep.point_config(config, dict(model=model, task='adding',
                                      seq_len=config.sweep.seq_lens[-1], seed=0))
  return export.with_kernel(p, model if kernel == 'auto' else f'{model}:{kernel}', dtype, 'tpu')


def test_a_recurrent_step_runs_its_scan_forward_and_back_and_splits_over_devices():
  c = tiny('lstm', 32)
  with c.unlocked():
    c.train.batch_size = 8
  p = _point(c, 'lstm', 'scan')
  task = tasks.build(p.task)
  n = task.input_len(32)
  train = roofline.step_cost(p, task, 32, 1, 'train')
  evaluation = roofline.step_cost(p, task, 32, 1, 'eval')
  assert train.sequential == 2 * n and evaluation.sequential == n
  assert 2 < train.flops / evaluation.flops < 4   # a backward pass is about two forwards
  split = roofline.step_cost(p, task, 32, 4, 'train')
  assert split.batch == 2 and split.flops < 0.3 * train.flops and split.memory < train.memory
  with pytest.raises(ValueError, match='does not divide'):
    roofline.step_cost(p, task, 32, 3, 'train')


def test_flash_attention_saves_no_t_by_t_weights_for_the_backward_pass():
  """On a TPU the Pallas kernel keeps O(T) residuals; the einsum kernel keeps its T x T
  weights: at T=256 the einsum step must hold far more."""
  c = tiny('transformer', 255)   # 255 inputs and the class token: 256, the kernel's blocks
  with c.unlocked():
    c.train.batch_size, c.model.heads = 2, 2
  task = tasks.build(_point(c, 'transformer').task)
  flash = roofline.step_cost(_point(c, 'transformer', 'pallas'), task, 255, 1, 'train')
  einsum = roofline.step_cost(_point(c, 'transformer', 'einsum'), task, 255, 1, 'train')
  assert flash.kernel == 'pallas' and einsum.kernel == 'einsum'
  weights = 2 * 2 * 256 * 256 * 4   # batch x heads x T x T float32, one layer
  assert einsum.memory - flash.memory > weights


def test_a_point_no_tpu_chip_can_hold_is_refused_by_the_target_check(tmp_path):
  r = launch('--config=experiments/long_range.py', '--models=transformer', '--tasks=adding',
             '--seq_lens=200000', '--seeds=0', '--lrs=0.001', '--only_check_args',
             '--target=tpu', f'--workdir={tmp_path / "w"}', cwd=tmp_path)
  assert r.returncode == 2, r.stderr
  (line,) = r.stderr.strip().splitlines()
  assert line.startswith('error: cannot fit: transformer (pallas kernel) on adding at '
                         'T=200000, v5e-8') and 'of 16 GB' in line
  assert 'roofline: transformer (pallas kernel) on adding at T=200000, v5e-8' in r.stdout
  assert not (tmp_path / 'w').exists()


def test_a_cudnn_kernel_is_counted_on_its_xla_path_and_says_so():
  c = tiny('lstm', 32)
  with c.unlocked():
    c.train.batch_size = 4
  task = tasks.build(_point(c, 'lstm').task)
  cudnn = roofline.step_cost(_point(c, 'lstm', 'cudnn'), task, 32, 1, 'train', 'gpu')
  scan = roofline.step_cost(_point(c, 'lstm', 'scan'), task, 32, 1, 'train', 'gpu')
  assert (cudnn.kernel, cudnn.counted) == ('cudnn', 'scan') and cudnn.flops == scan.flops
  lines = []
  roofline.check([_point(c, 'lstm', 'cudnn')], 'cuda', say=lines.append)
  assert [l.split(' on adding')[0] for l in lines] == [
      'roofline: lstm (cudnn kernel, counted on its scan path)'] * 2


def test_a_point_too_big_for_a_chip_is_told_what_would_fit_for_its_own_model(monkeypatch):
  import dataclasses
  monkeypatch.setitem(roofline.CHIPS, 'v5e',
                      dataclasses.replace(roofline.CHIPS['v5e'], hbm_bytes=1))
  c = tiny('lstm', 32)
  (lstm,) = roofline.check([_point(c, 'lstm', 'scan')], 'tpu', say=lambda line: None)
  assert lstm.startswith('lstm (scan kernel) on adding at T=32, v5e-8')
  assert lstm.endswith('; use a shorter seq_len, a smaller train.batch_size or a smaller '
                       'model.hidden')
  c = tiny('transformer', 32)
  (attention,) = roofline.check([_point(c, 'transformer', 'pallas')], 'tpu',
                                say=lambda line: None)
  assert 'use --models=transformer:blocked' in attention
