"""The throughput study: its name checks, skips, slope and crossover maths, and the
study end to end at tiny sizes (no timing thresholds: the machine is shared)."""

import json
import math

import ml_collections
import numpy as np
import pytest

from experiments import throughput as throughput_config
from seqlab import sweep
from seqlab.studies import throughput

@pytest.mark.parametrize('model, words', [
    ('attention:blocked@x', ["'attention:blocked@x'", 'integer >= 1']),
    ('attention:blocked@0', ["'attention:blocked@0'", 'integer >= 1']),
    ('torch_sdpa@2', ["'torch_sdpa@2'", 'no @N']),
    ('attention:blocked@3', ['bench.batch=2', 'multiple of 3']),
])
def test_bad_split_is_a_config_error(model, words, tmp_path):
  from experiments import throughput as throughput_config
  c = throughput_config.get_config('quick')
  c.sweep.models = [model]
  c.bench = ml_collections.ConfigDict(dict(hidden=8, heads=2, batch=2, steps=1, warmup=1))
  with pytest.raises(sweep.ConfigError) as e:
    throughput.run(c, str(tmp_path))
  for w in words:
    assert w in str(e.value)
  assert not (tmp_path / 'results.jsonl').exists()


def test_split_over_more_devices_than_exist_is_skipped_with_a_line(tmp_path, capsys):
  import jax
  from experiments import throughput as throughput_config
  c = throughput_config.get_config('quick')
  too_many = f'attention:blocked@{2 * jax.device_count()}'
  c.sweep.models = ['lstm', too_many]
  c.sweep.seq_lens = [8]
  c.bench = ml_collections.ConfigDict(dict(hidden=8, heads=2, batch=2 * jax.device_count(),
                                           steps=1, warmup=1))
  rows = throughput.run(c, str(tmp_path))
  assert [r['model'] for r in rows] == ['lstm']
  assert f'{too_many} skipped' in capsys.readouterr().out


def test_nproc_in_the_environment_is_recorded_with_a_line(tmp_path, capsys, monkeypatch):
  # XLA:CPU sizes its thread pool by NPROC, so a results file must say it was set
  from experiments import throughput as throughput_config
  c = throughput_config.get_config('quick')
  c.sweep.models, c.sweep.seq_lens = ['lstm'], [8]
  c.bench = ml_collections.ConfigDict(dict(hidden=8, heads=2, batch=2, steps=1, warmup=1))
  monkeypatch.setenv('NPROC', '1')
  rows = throughput.run(c, str(tmp_path / 'a'))
  assert rows[0]['nproc_env'] == 1
  assert 'NPROC=1 is set' in capsys.readouterr().out
  monkeypatch.setenv('NPROC', 'junk')
  rows = throughput.run(c, str(tmp_path / 'b'))
  assert rows[0]['nproc_env'] is None
  assert 'NPROC' not in capsys.readouterr().out


def test_slope_and_crossover():
  pts = [(t, 3.0 * t ** 2) for t in (64, 256, 1024, 4096)]
  assert throughput.fitted_slope(pts) == pytest.approx(2.0)
  # The longer half only: T + T^2/512 has slope ~1 at short T and ~2 at long T.
  mixed = [(t, t + t * t / 512) for t in (64, 256, 4096, 16384)]
  all_points = np.polyfit(np.log([p[0] for p in mixed]), np.log([p[1] for p in mixed]), 1)[0]
  assert all_points + 0.1 < throughput.fitted_slope(mixed) < 2.0
  assert throughput.fitted_slope([(64, 1.0), (256, 4.0)]) == pytest.approx(1.0)  # 2 points
  assert math.isnan(throughput.fitted_slope([(64, 1.0)]))
  rows = [dict(model='a', seq_len=t, status='ok', tokens_per_s_train=1e6 / t)
          for t in (100, 1000)] + \
         [dict(model='l', seq_len=t, status='ok', tokens_per_s_train=1e3) for t in (100, 1000)]
  # a/l = 10 at T=100 and 1 at T=1000: log-linear interpolation puts the crossing at 1000
  assert throughput.crossover_t(rows, 'a', 'l') == pytest.approx(1000.0)


def test_study_end_to_end(tmp_path):
  from experiments import throughput as throughput_config
  c = throughput_config.get_config('quick')
  c.sweep.models = ['lstm:fused', 'flax_lstm', 'attention:blocked']
  c.sweep.seq_lens = [8, 16]
  c.bench = ml_collections.ConfigDict(dict(hidden=8, heads=2, batch=2, steps=2, warmup=1,
                                           max_step_s=60.0))
  rows = throughput.run(c, str(tmp_path))
  assert len(rows) == 6 and all(r['status'] == 'ok' for r in rows)
  assert all('ratio_train_vs_flax_lstm' in r for r in rows)
  assert (tmp_path / 'figures' / 'throughput_b.png').exists()
  assert len(throughput.run(c, str(tmp_path))) == 6     # finished points are not re-run
  c.sweep.models = ['nope']
  with pytest.raises(sweep.ConfigError, match='nope'):
    throughput.run(c, str(tmp_path))



def test_the_device_script_runs_end_to_end_at_tiny_sizes(tmp_path, capsys):
  """experiments/throughput.py:gpu on this CPU: every kernel checked first (the vendor
  kernels through their fallbacks), then float32 and bfloat16 layers timed."""
  from seqlab.models import vendor_kernels
  vendor_kernels._NOTED.clear()   # its note is said once per process: hear it here
  c = throughput_config.get_config('gpu')
  c.bench = ml_collections.ConfigDict(dict(c.bench.to_dict(), hidden=8, heads=2, batch=2,
                                           steps=1, warmup=1, max_step_s=60.0))
  c.sweep.models = ['lstm:cudnn', 'lstm:cudnn/bfloat16', 'attention:pallas/bfloat16',
                    'jax_attention/bfloat16', 'flax_lstm']
  c.sweep.seq_lens = [8]
  rows = throughput.run(c, str(tmp_path))
  assert (tmp_path / 'backends.md').exists()
  checked = [json.loads(l) for l in open(tmp_path / 'backends.jsonl')]
  assert {r['dtype'] for r in checked} == {'float32', 'bfloat16'} and all(r['ok'] for r in checked)
  assert {r['model']: r['dtype'] for r in rows} == {
      'lstm:cudnn': 'float32', 'lstm:cudnn/bfloat16': 'bfloat16',
      'attention:pallas/bfloat16': 'bfloat16', 'jax_attention/bfloat16': 'bfloat16',
      'flax_lstm': 'float32'}
  by = {r['model']: r for r in rows}
  # a bf16 layer is compared with the baseline in bf16, not the float32 one
  assert 'ratio_train_vs_jax_attention' in by['attention:pallas/bfloat16']
  assert 'ratio_train_vs_flax_lstm' in by['lstm:cudnn'] and 'ratio_train_vs_flax_lstm' not in by['lstm:cudnn/bfloat16']
  assert 'note: model.kernel=pallas attention needs a TPU' in capsys.readouterr().out


def test_the_tpu_device_script_is_the_gpu_one_less_cuda_and_torch():
  from experiments import report as report_config
  gpu, tpu = throughput_config.get_config('gpu'), throughput_config.get_config('tpu')
  assert tpu.bench.to_dict() == gpu.bench.to_dict()
  assert set(tpu.sweep.models) == {m for m in gpu.sweep.models
                                   if 'cudnn' not in m and 'torch' not in m}
  assert 'attention:pallas/bfloat16' in tpu.sweep.models
  r = report_config.get_config('tpu')
  assert r.study_scales.throughput == 'tpu' and r.sections == report_config.get_config('gpu').sections
