"""Every (model, kernel, dtype, step) program exported for a TPU over an 8-device
abstract mesh (a v5e-8), and each kind of failure named (seqlab/measure/export.py)."""
import jax.numpy as jnp
import pytest

from seqlab import config as seqlab_config
from seqlab import sweep
from seqlab.measure import export


def point(model='transformer', seq_len=256, batch_size=16):
  c = seqlab_config.load('text:quick')
  p = sweep.point_config(c, dict(model=model, task='charlm', seq_len=seq_len, seed=0))
  with p.unlocked():
    p.train.batch_size = batch_size
    p.model.param_budget = 0
    p.model.update(hidden=32, heads=4, layers=1)
  return p


def test_every_family_exports_for_a_tpu_pod_in_both_dtypes():
  points = [point(m) for m in export.FAMILIES]
  results = export.check(points, targets=('tpu',), pods=('v5e-8',))
  assert len(results) == len(export.FAMILIES) * 2 * 3
  assert export.failures(results) == [], '\n'.join(r.line() for r in results)
  # the transformer's auto kernel on a TPU is Pallas flash attention, and it is the
  # kernel's call that was lowered (per device, under shard_map), not XLA's fallback
  flash = [r for r in results if r.model == 'transformer' and r.step in ('train', 'eval')]
  assert flash and all(r.kernel == 'pallas' and r.vendor_call and not r.notes for r in flash)
  assert not any(r.vendor_call for r in results if r.model != 'transformer')


def test_a_length_the_pallas_blocks_do_not_divide_is_named():
  # charlm at T=100: 100 positions, not a multiple of the kernel's 128-row blocks
  (r,) = export.check([point(seq_len=100)], pods=('v5e-8',), dtypes=('bfloat16',),
                      steps=('train',))
  assert r.ok and not r.vendor_call
  assert any('multiples of 128' in n for n in r.notes), r.line()


def test_a_batch_the_pod_does_not_divide_fails_with_its_numbers():
  (r,) = export.check([point('lstm', batch_size=12)], pods=('v4-32',), dtypes=('float32',),
                      steps=('train',))
  assert not r.ok and 'batch_size=12' in r.why and '16 devices' in r.why
  assert r.line().startswith('FAILED tpu v4-32 lstm:scan float32 train')


def test_a_float64_leak_fails(monkeypatch):
  from seqlab import train
  import jax
  real = train.make_eval_step

  def leaky(graphdef, task):
    step = real(graphdef, task)
    return lambda params, batch: jax.tree.map(
        lambda x: x.astype(jnp.float64) if jnp.issubdtype(x.dtype, jnp.floating) else x,
        step(params, batch))

  monkeypatch.setattr(train, 'make_eval_step', leaky)
  with jax.enable_x64(True):
    (r,) = export.check([point('gru')], pods=('v5e-8',), dtypes=('float32',), steps=('eval',))
  assert not r.ok and 'float64' in r.why


def test_an_op_with_no_lowering_is_named(monkeypatch):
  # a Mosaic kernel exported for a GPU has no lowering there
  from seqlab import train
  real = train.make_train_step

  def tpu_only(graphdef, task, tx):
    from seqlab.models import vendor_kernels
    step = real(graphdef, task, tx)

    def f(state, batch):
      q = jnp.zeros((16, 128, 1, 128), jnp.float32)
      o = vendor_kernels.pallas_flash_attention(q, q, q, True)
      state, metrics = step(state, batch)
      return state, dict(metrics, probe=o.sum())
    return f

  monkeypatch.setattr(train, 'make_train_step', tpu_only)
  (r,) = export.check([point('rnn')], targets=('cuda',), pods=('v5e-8',),
                      dtypes=('float32',), steps=('train',))
  assert not r.ok and r.why, r.line()


@pytest.mark.parametrize('model', ['lstm', 'transformer'])
def test_cuda_kernels_lower_or_say_why_and_check_the_xla_path(model):
  results = export.check([point(model)], targets=('cuda',), pods=('v5e-8',),
                         dtypes=('bfloat16',), steps=('train',))
  assert results[0].kernel == 'cudnn'
  assert export.failures(results) == [], '\n'.join(r.line() for r in results)
  if not results[0].ok:   # no GPU libraries here: one line, then the XLA path lowered
    assert results[0].why.startswith('cuDNN does not lower without the GPU libraries')
    assert len(results) == 2 and results[1].ok and results[1].kernel != 'cudnn'
