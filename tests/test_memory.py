"""A point whose train step cannot fit is refused before anything is written, with the
bytes it needs (XLA's memory analysis of the compiled step) and what would fit
(seqlab/measure/memory.py); --target exports the sweep's programs for an accelerator."""
import os

import pytest

from seqlab import config as seqlab_config
from seqlab import sweep
from seqlab.measure import memory
from tests.test_launch import launch

HUGE = ('--config=experiments/long_range.py', '--models=transformer', '--tasks=adding',
        '--seq_lens=200000', '--seeds=0', '--lrs=0.001')


@pytest.mark.parametrize('check_only', [True, False])
def test_a_transformer_that_cannot_fit_is_refused_before_anything_is_written(tmp_path,
                                                                             check_only):
  workdir = tmp_path / 'w'
  r = launch(*HUGE, f'--workdir={workdir}', *(['--only_check_args'] if check_only else []),
             cwd=tmp_path)
  assert r.returncode == 2, r.stderr
  lines = r.stderr.strip().splitlines()
  assert len(lines) == 1, r.stderr
  assert 'transformer on adding at T=200000 cannot fit' in lines[0]
  assert 'TiB a device' in lines[0] and 'transformer:blocked' in lines[0]
  assert not workdir.exists()


def tiny(model='lstm', seq_len=32):
  c = seqlab_config.load('long_range:quick')
  with c.unlocked():
    c.sweep.models, c.sweep.tasks, c.sweep.seq_lens = [model], ['adding'], [16, seq_len]
    c.sweep.seeds, c.model.param_budget, c.model.hidden = [0], 0, 16
  return c


def test_the_longest_length_is_compiled_and_grows_with_it():
  (short,) = memory.check(tiny(seq_len=32), every=True)
  (long,) = memory.check(tiny(seq_len=512), every=True)
  assert short[0] == 'lstm on adding at T=32' and long[0] == 'lstm on adding at T=512'
  assert 0 < short[1] < long[1]
  # a real run compiles nothing for a point far below the device's memory
  assert memory.check(tiny(seq_len=512)) == []


def test_a_recurrent_point_over_the_limit_names_its_bytes_and_remedy(monkeypatch):
  monkeypatch.setattr(memory, 'device_bytes', lambda device=None: (1 << 20, 'a 1 MiB test'))
  with pytest.raises(sweep.ConfigError) as e:
    memory.check(tiny(seq_len=4096))
  msg = str(e.value)
  assert 'lstm on adding at T=4096 cannot fit' in msg and 'a 1 MiB test is 1 MiB' in msg
  assert 'smaller model.hidden' in msg


def test_fmt_bytes():
  assert memory.fmt_bytes(512) == '512 B'
  assert memory.fmt_bytes(3 * 2**30) == '3 GiB'
  assert memory.fmt_bytes(82e12) == '74.6 TiB'


def test_target_tpu_exports_the_sweeps_programs(tmp_path):
  args = ('--config=experiments/long_range.py', '--models=lstm,transformer', '--tasks=adding',
          '--seq_lens=127', '--seeds=0', '--lrs=0.001', '--config.model.param_budget=0',
          '--config.model.hidden=32', f'--workdir={tmp_path / "w"}')
  r = launch(*args, '--only_check_args', '--target=tpu', cwd=tmp_path)
  assert r.returncode == 0, r.stderr
  ok = [l for l in r.stdout.splitlines() if l.startswith('ok tpu ')]
  # 2 models x 2 dtypes x 2 pods x 3 steps (adding reads out the last state: decode says so); T=127 is 128 positions
  assert len(ok) == 24, r.stdout
  assert any(l.startswith('ok tpu v4-32 transformer:pallas bfloat16 train') and
             'vendor kernel call' in l for l in ok), r.stdout
  assert not (tmp_path / 'w').exists()
  r = launch(*args, '--target=tpu', cwd=tmp_path)
  assert r.returncode == 2 and '--target=tpu' in r.stderr and '--only_check_args' in r.stderr
  assert not (tmp_path / 'w').exists()
