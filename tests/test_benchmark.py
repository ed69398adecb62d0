"""The throughput instrument: result fields, baseline ratios, ceilings, splits over
devices, timeouts and compile timing (no timing thresholds: the machine is shared)."""
import os

import numpy as np
import pytest

from seqlab.measure import benchmark

TINY = benchmark.BenchConfig(hidden=8, heads=2, batch=2, steps=2, warmup=1, max_step_s=60)
CEILINGS = dict(ceiling_flops_per_s=1e9, ceiling_cores_busy=1.0,
                batched_ceiling_flops_per_s=5e8, batched_ceiling_cores_busy=1.0)


@pytest.mark.parametrize('name', ['lstm:fused', 'flax_lstm', 'attention:blocked'])
def test_measure_fields(name, monkeypatch):
  """The rates follow from the timed medians: fake them (train 0.25 s, inference 0.05 s)
  and check every derived field against the hand-worked numbers."""
  times = iter([[0.24, 0.25, 0.26], [0.05, 0.05]])   # each timed call: train, then inference
  monkeypatch.setattr(benchmark, '_times', lambda f, args, bc: next(times))
  r = benchmark.measure(name, TINY, 16, CEILINGS)
  assert r['step_ms_samples'] == pytest.approx([240.0, 250.0, 260.0])   # kept for intervals
  assert r['status'] == 'ok'
  for k in ('model', 'seq_len', 'batch', 'tokens_per_s_train', 'tokens_per_s_infer',
            'step_ms', 'compile_s', 'peak_memory_bytes', 'flops_per_token', 'device'):
    assert k in r
  assert (r['model'], r['seq_len'], r['batch']) == (name, 16, 2)
  assert r['step_ms'] == pytest.approx(250.0) and r['infer_ms'] == pytest.approx(50.0)
  assert r['tokens_per_s_train'] == pytest.approx(2 * 16 / 0.25)
  assert r['tokens_per_s_infer'] == pytest.approx(2 * 16 / 0.05)
  # forward + backward = 3 x the forward's flops (Kaplan et al. 2020)
  assert r['flops_per_s_train'] == pytest.approx(3 * r['flops_per_token'] * 2 * 16 / 0.25)
  assert r['fraction_of_matmul_ceiling'] == pytest.approx(r['flops_per_s_train'] / 1e9)
  # XLA's memory analysis works on CPU: the guard against oversized programs is live,
  # and the train step holds at least its input [B, T, D] in float32
  assert r['peak_memory_bytes'] is not None and r['peak_memory_bytes'] >= 2 * 16 * 8 * 4


def test_matmul_ceilings_measure_rate_and_cores():
  c = benchmark.matmul_ceilings(n=64, reps=2)
  assert c['ceiling_flops_per_s'] > 1e6 and c['batched_ceiling_flops_per_s'] > 1e6
  for k in ('ceiling_cores_busy', 'batched_ceiling_cores_busy'):
    assert 0 < c[k] <= benchmark.usable_cores() + 0.5


def test_a_ceiling_is_the_best_of_its_rounds(monkeypatch):
  medians = iter([[0.2], [0.1], [0.4]])    # seconds per call, one median per round
  monkeypatch.setattr(benchmark, '_times', lambda f, args, bc: next(medians))
  import jax.numpy as jnp
  rate, _ = benchmark._rate(lambda: jnp.zeros(()), (), flops=1.0, reps=2, rounds=3)
  assert rate == pytest.approx(10.0)


def test_usable_cores_follow_the_affinity_mask(monkeypatch):
  before = benchmark.usable_cores()
  with monkeypatch.context() as m:   # what `taskset -c 0` shows the process
    m.setattr(benchmark.os, 'sched_getaffinity', lambda pid: {0}, raising=False)
    assert benchmark.usable_cores() == 1
    assert benchmark._row('lstm', TINY, 8)['cpu_count'] == 1
  assert benchmark.usable_cores() == before


def test_timeout_is_recorded_not_raised():
  r = benchmark.measure('lstm', benchmark.BenchConfig(hidden=8, batch=2, max_step_s=0.0), 8,
                        CEILINGS)
  assert r['status'] == 'timeout'
  assert r['compile_s'] > 0   # it compiled before it timed out: the compile time is kept


def test_program_larger_than_memory_is_recorded_oom_not_run(monkeypatch):
  monkeypatch.setattr(benchmark, 'device_memory_bytes', lambda: 1024)   # 1 KiB "device"
  r = benchmark.measure('attention:einsum', TINY, 16, CEILINGS)
  assert r['status'] == 'oom' and 'GiB' in r['error']
  assert r['compile_s'] > 0 and r['peak_memory_bytes'] > 1024


def test_device_memory_is_known_here():
  """None would silently turn the out-of-memory guard off; on this CPU it is the
  host's available memory, at most its physical memory."""
  have = benchmark.device_memory_bytes()
  assert have is not None and have > 2 ** 20
  assert have <= os.sysconf('SC_PHYS_PAGES') * os.sysconf('SC_PAGE_SIZE')


def test_flops_per_token_analytic():
  bc = benchmark.BenchConfig(hidden=4)
  assert benchmark.flops_per_token('lstm', bc, 10) == 2 * (4 * 16 + 4 * 16)
  # attention grows linearly in T: 2 T D for q k^T and p v, halved by the causal mask
  d = benchmark.flops_per_token('attention:einsum', bc, 20) - \
      benchmark.flops_per_token('attention:einsum', bc, 10)
  assert d == 2.0 * 2 * 10 * 4 / 2


def test_baseline_ratios():
  rows = [dict(model='lstm', seq_len=8, batch=2, status='ok', tokens_per_s_train=30.0,
               tokens_per_s_infer=10.0),
          dict(model='flax_lstm', seq_len=8, batch=2, status='ok', tokens_per_s_train=20.0,
               tokens_per_s_infer=40.0),
          dict(model='flax_lstm', seq_len=16, batch=2, status='ok', tokens_per_s_train=1.0,
               tokens_per_s_infer=1.0)]
  benchmark.add_baseline_ratios(rows)
  assert rows[0]['ratio_train_vs_flax_lstm'] == 1.5
  assert rows[0]['ratio_infer_vs_flax_lstm'] == 0.25
  assert 'ratio_train_vs_torch_lstm' not in rows[0]


def test_baseline_ratios_of_a_split_layer_use_the_same_split():
  row = lambda m, tok: dict(model=m, seq_len=8, batch=2, status='ok', tokens_per_s_train=tok,
                            tokens_per_s_infer=tok)
  rows = [row('attention:blocked@2', 60.0), row('jax_attention', 10.0),
          row('jax_attention@2', 20.0), row('torch_sdpa', 40.0)]
  benchmark.add_baseline_ratios(rows)
  assert rows[0]['ratio_train_vs_jax_attention'] == 3.0   # against jax_attention@2
  assert rows[0]['ratio_train_vs_torch_sdpa'] == 1.5      # torch: threads, no split
  assert rows[2]['ratio_train_vs_jax_attention'] == 1.0


def test_split_layer_trains_like_the_unsplit_one():
  """'@2' splits the batch over 2 of the 8 test devices: the same loss and the same
  updated parameters as on one device, with the input really split."""
  import jax
  out = {}
  for name in ('attention:blocked', 'attention:blocked@2'):
    train_step, _, params, opt_state, e = benchmark.jax_step(name, TINY, 16)
    out[name] = jax.jit(train_step)(params, opt_state, e)
    assert len(e.sharding.device_set) == benchmark.split_devices(name)[1]
  (p1, _, l1), (p2, _, l2) = out.values()
  assert float(l2) == pytest.approx(float(l1), rel=1e-5)
  for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)
  r = benchmark.measure('attention:blocked@2', TINY, 16, CEILINGS)
  assert r['status'] == 'ok' and r['devices'] == 2 and r['model'] == 'attention:blocked@2'


def test_a_row_carries_its_roofline_count_and_no_prediction_off_a_known_chip():
  r = benchmark.measure('lstm', TINY, 16, CEILINGS)
  # the jaxpr's count: at least the analytic train step (3 x forward), a scan forward and back
  assert r['roofline_flops'] >= 3 * r['flops_per_token'] * TINY.batch * 16 * 0.9
  assert r['roofline_sequential'] == 2 * 16 and r['roofline_bytes'] > 0
  assert r['roofline_chip'] is None and r['predicted_step_ms'] is None   # a CPU
  assert 'measured_over_predicted' not in r


def test_timeout_predicted_only_beyond_twice_the_limit():
  bc = benchmark.BenchConfig(max_step_s=1.0)
  assert benchmark.predicted_timeout('lstm', bc, 1024, None) is None
  assert benchmark.predicted_timeout('lstm', bc, 1024, (256, 0.4)) is None      # 1.6 s <= 2
  r = benchmark.predicted_timeout('lstm', bc, 4096, (256, 0.4))                 # 6.4 s
  assert r['status'] == 'timeout' and 'predicted 6.4 s' in r['error']


def test_compile_is_timed_after_the_inputs_are_ready(monkeypatch):
  """Dispatch is asynchronous: the benchmark input must be waited for before the timed
  compile, or its generation shares the cores with the compiler and is counted in
  compile_s (it made T=4096 compiles look 1.5x slower than T=64 ones)."""
  import jax
  events, made = [], []
  normal, ready, compile_ = jax.random.normal, jax.block_until_ready, jax.stages.Lowered.compile

  def record_normal(*a, **kw):
    made.append(normal(*a, **kw))
    return made[-1]

  def record_ready(x):
    events.append(('ready', {id(leaf) for leaf in jax.tree.leaves(x)}))
    return ready(x)

  def record_compile(self, *a, **kw):
    events.append(('compile', None))
    return compile_(self, *a, **kw)

  monkeypatch.setattr(jax.random, 'normal', record_normal)
  monkeypatch.setattr(jax, 'block_until_ready', record_ready)
  monkeypatch.setattr(jax.stages.Lowered, 'compile', record_compile)
  assert benchmark.measure('lstm:fused', TINY, 8, CEILINGS)['status'] == 'ok'
  first_compile = next(i for i, (kind, _) in enumerate(events) if kind == 'compile')
  waited = set().union(*(ids for kind, ids in events[:first_compile] if kind == 'ready'))
  assert made and id(made[0]) in waited


def test_compile_time_is_never_a_persistent_cache_hit(monkeypatch):
  """A report run turns the persistent compilation cache on (grad_flow) before the
  throughput study; a cache hit would be recorded as a ~0.05 s compile."""
  import jax
  seen = []
  compile_ = jax.stages.Lowered.compile

  def record_compile(self, *a, **kw):
    seen.append(jax.config.jax_enable_compilation_cache)
    return compile_(self, *a, **kw)

  monkeypatch.setattr(jax.stages.Lowered, 'compile', record_compile)
  was = jax.config.jax_enable_compilation_cache
  assert was   # jax's default: on whenever a cache directory is set
  assert benchmark.measure('rnn', TINY, 8, CEILINGS)['status'] == 'ok'
  assert seen and not any(seen)
  assert jax.config.jax_enable_compilation_cache == was   # restored


def test_on_a_known_chip_a_row_has_measured_over_predicted(monkeypatch):
  from seqlab.measure import roofline
  from seqlab.studies import throughput
  monkeypatch.setattr(roofline, 'chip_of', lambda kind: 'h100')
  r = benchmark.measure('lstm', TINY, 16, CEILINGS)
  assert r['roofline_chip'] == 'h100' and r['predicted_step_ms'] > 0
  assert r['measured_over_predicted'] == pytest.approx(r['step_ms'] / r['predicted_step_ms'])
  head, rule, line = throughput.table([r]).splitlines()
  assert head.endswith('| roofline ms | measured / roofline |')
  assert line.endswith(f'| {r["predicted_step_ms"]:.3g} | {r["measured_over_predicted"]:.3g} |')
  assert rule.count('---') == head.count('|') - 1
