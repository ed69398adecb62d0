"""The launcher: bad input is one line on stderr, exit status 2, nothing written; --list,
--print_config, --only_check_args, --rerun; the progress line."""
import json
import os
import subprocess
import sys

import pytest

from seqlab.studies import STUDIES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args, cwd, **env_extra):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu', **env_extra)
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
    (['--lrs=1e-3,nan'], ['config.sweep.lrs=nan is not allowed', 'finite and > 0']),
    (['--lrs=', '--config.train.lr=-0.01'], ['config.train.lr=-0.01', 'a number, finite and > 0']),
    (['--config.train.lr=0.01'], ['--config.train.lr=0.01 would be ignored', 'use --lrs=0.01']),
    (['--lrs=fast'], ['--lrs=fast: every value must be a number']),
    (['--config.train.steps=abc'], ['config.train.steps takes an integer', "not 'abc'"]),
    (['--config.train.warmup_steps=-1'], ['warmup_steps=-1', 'an integer, >= 0']),
    (['--config.train.clip_norm=inf'], ['clip_norm=inf', 'finite and >= 0']),
    (['--config.train.final_lr_fraction=2'], ['final_lr_fraction=2.0', 'in [0, 1]']),
    (['--config.model.hidden=0', '--config.model.param_budget=0'], ['model.hidden=0', '> 0']),
    (['--config.model.hidden=8'], ['--config.model.hidden=8 would be ignored',
                                   'model.param_budget=20000', '--config.model.param_budget=0']),
    (['--skip=nope-*'], ["sweep.skip='nope-*' matches no point"]),
    (['--config.task.seq_len=16'], ['--config.task.seq_len=16 would be ignored', '--seq_lens=16']),
    (['--config.model.name=gru'], ['sweep.models', '--models=gru']),
    (['--config.task.name=copy'], ['sweep.tasks', '--tasks=copy']),
    (['--config.seed=3'], ['sweep.seeds', '--seeds=3']),
    (['--tpu=x'], ['--tpu=x needs --zone']),
    (['--models=foo', '--only_check_args'], ["unknown model 'foo'"]),
    (['--rerun=lstm-*'], ['--rerun=lstm-*: no finished point', 'finished: none']),
    (['--sections=long_range'], ["--sections: config.study='long_range' has no sections"]),
])
def test_bad_input_is_one_line_exit_2_nothing_written(args, words, tmp_path):
  p = launch('--config=experiments/long_range.py', *args, f'--workdir={tmp_path}/w', cwd=tmp_path)
  assert p.returncode == 2, p.stderr
  lines = p.stderr.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: '), p.stderr
  for w in words:
    assert w in lines[0]
  assert not os.path.exists(tmp_path / 'w')


def test_report_sections_from_the_command_line(tmp_path):
  p = launch('--config=experiments/report.py:quick', '--sections=impulse,long_range',
             '--print_config', cwd=tmp_path)
  assert p.returncode == 0, p.stderr
  assert '- impulse\n- long_range\nstudy: report' in p.stdout
  p = launch('--config=experiments/report.py:quick', '--sections=impulse,nope',
             '--only_check_args', f'--workdir={tmp_path}/w', cwd=tmp_path)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      'error: report sections nope unknown; allowed: ' + ', '.join(STUDIES)], p.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_path_beside_a_dataset_is_an_error(tmp_path):
  (tmp_path / 'notes.txt').write_text('some notes\n' * 100)
  p = launch('--config=experiments/text.py', '--config.task.path=notes.txt', '--models=lstm',
             f'--workdir={tmp_path}/w', cwd=tmp_path)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      "error: task.path='notes.txt' is not read while task.dataset='stdlib'; add "
      "--config.task.dataset= (empty) to read the file, or drop task.path"], p.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_hub_without_network_is_one_line(tmp_path):
  # A closed local port stands in for a Hub that cannot be reached.
  p = launch('--config=experiments/text.py', '--config.task.dataset=karpathy/tiny_shakespeare',
             '--models=lstm', f'--workdir={tmp_path}/w', cwd=tmp_path,
             HF_ENDPOINT='http://127.0.0.1:9', HF_DATASETS_OFFLINE='0', HF_HUB_OFFLINE='0')
  assert p.returncode == 2, p.stderr
  (line,) = p.stderr.strip().splitlines()
  assert 'did not answer within 3s' in line and 'task.path' in line
  assert not os.path.exists(tmp_path / 'w')


@pytest.mark.parametrize('kind', ['file', 'under_a_file'])  # not writable: test_failures.py
def test_workdir_problems_are_one_line(kind, tmp_path):
  (tmp_path / 'f').write_text('x')
  workdir = {'file': tmp_path / 'f', 'under_a_file': tmp_path / 'f' / 'w'}[kind]
  p = launch('--config=experiments/long_range.py', '--models=rnn', f'--workdir={workdir}',
             cwd=tmp_path)
  assert p.returncode == 2, p.stderr
  (line,) = p.stderr.strip().splitlines()
  assert line.startswith('error: workdir ') and str(workdir) in line
  assert os.listdir(tmp_path) == ['f']   # nothing written


def test_redraw_only_with_nothing_run(tmp_path):
  p = launch('--config=experiments/report.py', '--config.redraw_only=True',
             f'--workdir={tmp_path}/w', cwd=tmp_path)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      f'error: nothing to report: no study in {tmp_path}/w has results; run without '
      f'--config.redraw_only=True first'], p.stderr
  assert not os.path.exists(tmp_path / 'w')


def test_list_print_config_and_check_only_write_nothing(tmp_path):
  p = launch('--config=experiments/long_range.py', '--list', cwd=tmp_path)
  assert p.returncode == 0 and not p.stderr, p.stderr
  for words in ('long_range', 'grad_flow', 'report', 'lstm', 'kernels: scan, fused', 'adding',
                'charlm', 'train.lr', 'peak learning rate', 'sweep.seq_lens'):
    assert words in p.stdout, words
  p = launch('--config=experiments/long_range.py', '--print_config', '--models=gru',
             '--lrs=0.02', cwd=tmp_path)
  assert p.returncode == 0 and not p.stderr, p.stderr
  assert '- 0.02' in p.stdout and '- gru' in p.stdout
  p = launch('--config=experiments/impulse.py', '--lrs=0.02', cwd=tmp_path)
  assert p.returncode == 2 and 'has no sweep.lrs to set' in p.stderr, p.stderr
  p = launch('--config=experiments/long_range.py', '--only_check_args', '--models=gru',
             cwd=tmp_path)
  assert p.returncode == 0 and 'every check passed' in p.stdout and not p.stderr, p.stderr
  assert os.listdir(tmp_path) == []


TINY = ['--config=experiments/long_range.py', '--tasks=adding', '--seq_lens=10', '--seeds=0',
        '--config.num_devices=1', '--config.model.hidden=8', '--config.model.param_budget=0', '--lrs=', '--config.train.batch_size=8',
        '--config.train.eval_batches=1', '--config.train.log_every=10',
        '--config.train.steps=20', '--config.train.checkpoint_every=10']


def test_rerun_runs_chosen_points_again_and_keeps_the_rest(tmp_path):
  w = tmp_path / 'w'
  p = launch(*TINY, '--models=rnn,gru', f'--workdir={w}', cwd=tmp_path)
  assert p.returncode == 0, p.stderr
  # the progress line: compile time once per point, then steady-state tok/s and time left
  assert p.stdout.count('compiled and ran step 1 in') == 2
  assert 'tok/s  elapsed' in p.stdout and ' left 0:00:' in p.stdout
  rows = {r['point']: r for r in map(json.loads, open(w / 'results.jsonl'))}
  rnn_dir = os.listdir(w / 'rnn-adding-T10-s0')
  p = launch(*TINY, '--models=rnn,gru', '--rerun=gru-*', f'--workdir={w}', cwd=tmp_path)
  assert p.returncode == 0, p.stderr
  assert 'rerunning 1 point(s) from the start: gru-adding-T10-s0' in p.stdout
  assert '[rnn-adding-T10-s0] already finished; skipping' in p.stdout
  assert 'resuming' not in p.stdout   # gru trained from step 0
  again = {r['point']: r for r in map(json.loads, open(w / 'results.jsonl'))}
  assert again['rnn-adding-T10-s0'] == rows['rnn-adding-T10-s0']
  assert os.listdir(w / 'rnn-adding-T10-s0') == rnn_dir
  assert again['gru-adding-T10-s0']['final_loss'] == rows['gru-adding-T10-s0']['final_loss']
  p = launch(*TINY, '--models=rnn,gru', '--rerun=lstm-*', f'--workdir={w}', cwd=tmp_path)
  assert p.returncode == 2 and p.stderr.strip().splitlines() == [
      f'error: --rerun=lstm-*: no finished point of {w} matches; finished: rnn-adding-T10-s0, '
      f'gru-adding-T10-s0 (or diverged)'], p.stderr


def test_help_lists_the_sweep_flags(tmp_path):
  p = launch('--help', cwd=tmp_path)  # absl exits 1 after printing help
  for flag in ('--config', '--workdir', '--models', '--tasks', '--seq_lens', '--seeds',
               '--list', '--print_config', '--rerun', '--evaluate', '--checkpoint'):
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
      "error: config.cpu_devices=-1 is not allowed: it must be an integer, >= 0 (0: jax's "
      "default of one)"], p.stderr
  assert not os.path.exists(tmp_path / 'w2')
