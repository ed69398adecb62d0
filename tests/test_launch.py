"""The launcher: bad input is one line on stderr, exit status 2, nothing written."""
import json
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


def test_cpu_devices_makes_the_devices_a_split_model_runs_on(tmp_path):
  """The throughput config's cpu_devices=2 gives the launched process 2 CPU devices
  (the test environment's XLA_FLAGS are cleared), so 'attention:blocked@2' runs."""
  tiny = ['--config.bench.hidden=8', '--config.bench.heads=2', '--config.bench.batch=2',
          '--config.bench.steps=1', '--config.bench.warmup=1', '--seq_lens=8']
  p = launch('--config=experiments/throughput.py', '--models=attention:blocked@2', *tiny,
             f'--workdir={tmp_path}/w', cwd=tmp_path)
  assert p.returncode == 0, p.stderr
  with open(tmp_path / 'w' / 'results.jsonl') as f:
    (row,) = [json.loads(line) for line in f]
  assert (row['model'], row['status'], row['devices']) == ('attention:blocked@2', 'ok', 2)
  p = launch('--config=experiments/throughput.py', '--models=attention:blocked@2', *tiny,
             '--config.cpu_devices=1', f'--workdir={tmp_path}/w1', cwd=tmp_path)
  assert p.returncode == 0 and 'attention:blocked@2 skipped' in p.stdout, p.stdout + p.stderr
  p = launch('--config=experiments/throughput.py', '--config.cpu_devices=-1',
             f'--workdir={tmp_path}/w2', cwd=tmp_path)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      "error: config.cpu_devices=-1 must be >= 0 (0: jax's default of one)"], p.stderr
  assert not os.path.exists(tmp_path / 'w2')
