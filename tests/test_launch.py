"""The launcher: bad input is one line on stderr, exit status 2, nothing written."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args, cwd):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'), *args], cwd=cwd,
                        capture_output=True, text=True, env=env, timeout=300)


@pytest.mark.parametrize('args, words', [
    (['--models=foo'], ["unknown model 'foo'", 'rnn, lstm, gru, transformer']),
    (['--tasks=nope'], ["unknown task 'nope'", 'adding']),
    (['--seq_lens=1', '--tasks=adding'], ['seq_len=1 is too short', 'at least 2']),
    (['--seq_lens=-5'], ['seq_len=-5']),
    (['--config.train.batch_size=7', '--config.num_devices=2'], ['batch_size=7', 'multiple of 2']),
    (['--config.model.nope=3'], ['unknown config key config.model.nope', 'hidden']),
    (['--config=experiments/nope.py'], ['not found', 'experiments/long_range.py']),
])
def test_bad_input_is_one_line_exit_2_nothing_written(args, words, tmp_path):
  p = launch('--config=experiments/long_range.py', *args, f'--workdir={tmp_path}/w', cwd=tmp_path)
  assert p.returncode == 2, p.stderr
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), p.stderr
  for w in words:
    assert w in lines[0]
  assert not os.path.exists(tmp_path / 'w')


def test_help_lists_the_sweep_flags(tmp_path):
  p = launch('--help', cwd=tmp_path)  # absl exits 1 after printing help
  for flag in ('--config', '--workdir', '--models', '--tasks', '--seq_lens', '--seeds'):
    assert flag in p.stdout
