"""Mixed precision: float32 master parameters and optimiser state, the forward pass in
bfloat16 (models.merge); a bf16 run learns; every study runs in bf16 at tiny sizes; and
every kernel agrees with its reference on this device (seqlab.measure.backends)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab import models, train
from seqlab.measure import backends
from tests import (test_generation, test_grad_flow, test_length_gen, test_recall_capacity,
                   test_text_tasks)
from tests.test_train import tiny_config


@pytest.mark.parametrize('name', sorted(models.MODELS))
def test_merge_computes_in_the_compute_dtype_and_keeps_float32_gradients(name):
  cfg = models.ModelConfig(name=name, hidden=8, heads=2, vocab_size=7, num_outputs=7,
                           dtype='bfloat16')
  graphdef, params = nnx.split(models.build(cfg, 0), nnx.Param)
  tokens = jnp.array([[1, 2, 3, 4]])
  out = models.merge(graphdef, params)(tokens)
  assert out.dtype == jnp.bfloat16     # activations in bf16 from the embedding to the head
  grads = jax.grad(lambda p: jnp.sum(models.merge(graphdef, p)(tokens).astype(jnp.float32)))(params)
  assert {x.dtype for x in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
  f32 = models.merge(graphdef, params, dtype='float32')(tokens)
  np.testing.assert_allclose(out.astype(jnp.float32), f32, atol=0.1 * float(jnp.abs(f32).max()) + 0.05)


def test_a_bfloat16_run_learns_the_adding_problem(tmp_path):
  c = tiny_config('lstm', 'adding', seq_len=20, steps=300, lr=3e-3, warmup_steps=20)
  with c.unlocked():
    c.model.hidden, c.model.dtype = 32, 'bfloat16'
    c.train.batch_size, c.train.log_every, c.train.eval_examples = 32, 100, 128
  r = train.train(c, str(tmp_path), verbose=False)
  assert r['final_loss'] < 0.1 * r['chance_loss'], r


@pytest.mark.parametrize('study', ['grad_flow', 'impulse', 'generation', 'length_gen',
                                   'recall_capacity', 'long_range', 'text', 'throughput'])
def test_every_study_runs_in_bfloat16(study, tmp_path):
  from seqlab import studies
  if study in ('grad_flow', 'generation', 'length_gen', 'recall_capacity'):
    c = {'grad_flow': test_grad_flow, 'generation': test_generation,
         'length_gen': test_length_gen, 'recall_capacity': test_recall_capacity}[study].tiny_config()
  elif study == 'long_range':
    c = tiny_config('gru', 'copy', seq_len=10, steps=3)
    with c.unlocked():   # the sweep's axes, not model/task: every model at one tiny point
      c.study = 'long_range'
      c.sweep.tasks, c.sweep.seq_lens, c.sweep.seeds = ['copy'], [10], [0]
  elif study == 'text':
    c = test_text_tasks.tiny_config('charlm')
    c.sweep.models, c.sweep.tasks, c.sweep.seq_lens = ['gru'], ['charlm'], [16]
  elif study == 'impulse':
    from experiments import impulse
    c = impulse.get_config()
    with c.unlocked():
      c.sweep.models, c.sweep.seq_lens, c.sweep.seeds = ['lstm', 'lru', 'transformer'], [16], [0]
      c.model.hidden = 8
  else:
    from experiments import throughput
    c = throughput.get_config('quick')
    with c.unlocked():
      c.bench.update(dict(hidden=8, heads=2, batch=2, steps=1, warmup=1))
      c.sweep.models, c.sweep.seq_lens = ['lstm:fused', 'attention:blocked', 'jax_attention'], [8]
  with c.unlocked():
    if study == 'generation':
      c.sweep.models = ['lstm', 'transformer']
      c.generation.dtype = 'bfloat16'
    elif study == 'throughput':
      c.bench.dtype = 'bfloat16'
    else:
      c.model.dtype = 'bfloat16'
  rows = studies.STUDIES[study].run(c, str(tmp_path))
  assert rows and not any(r.get('status') in ('timeout', 'oom') for r in rows)
  if study == 'throughput':
    assert {r['dtype'] for r in rows} == {'bfloat16'}
    assert all(np.isfinite(r['tokens_per_s_train']) for r in rows)


@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_every_kernel_agrees_with_its_reference_on_this_device(dtype):
  rows = backends.check(dtype, hidden=8)
  assert {(r['model'], r['kernel']) for r in rows} == {
      (m, k) for m, ks in models.KERNELS.items() for k in ks[1:]}
  bad = [r for r in rows if not r['ok']]
  assert not bad, backends.table(bad)
  if jax.default_backend() == 'cpu':   # the vendor kernels run their fallbacks here
    assert {(r['model'], r['kernel']) for r in rows if not r['served']} == {
        ('lstm', 'cudnn'), ('transformer', 'cudnn'), ('transformer', 'pallas')}


def test_a_wrong_kernel_is_caught_by_the_check(monkeypatch):
  """The check can fail: fused kernels whose outputs are 1% off are flagged."""
  from seqlab.models import fused_rnn
  real = fused_rnn.fused_layer

  def broken(cell, w_ih, b, w_hh, x, state0, unroll):
    h, s = real(cell, w_ih, b, w_hh, x, state0, unroll)
    return h * 1.01, s
  monkeypatch.setattr(fused_rnn, 'fused_layer', broken)
  backends._check.cache_clear()   # measured again, with the broken kernel
  try:
    rows = {(r['model'], r['kernel']): r for r in backends.check('float32', hidden=8)}
  finally:
    backends._check.cache_clear()
  assert not rows[('gru', 'fused')]['ok'] and not rows[('lstm', 'fused')]['ok']
  assert rows[('lru', 'sequential')]['ok']
