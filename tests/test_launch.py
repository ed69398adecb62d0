"""The launcher: bad input is one line on stderr, exit status 2, nothing written; --list,
--print_config, --only_check_args, --rerun; the progress line."""
import ast
import json
import os
import re
import subprocess
import sys

import pytest

from seqlab.studies import STUDIES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def launch(*args, cwd, **env_extra):
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu', **env_extra)
  return subprocess.run([sys.executable, os.path.join(ROOT, 'launch.py'), *args], cwd=cwd,
                        capture_output=True, text=True, env=env, timeout=300)


# ------------------------------------------------------------------ the bad-input table
# docs/faults.md's bad-input table is this test's list of cases: each row's input is run
# as `launch.py <input>` in a fresh folder holding the files its fixture list names, and
# its exit status, first stderr line and "written?" must be what the row says. The same
# code measures the table for the document: `python tests/test_launch.py`.
FAULTS_MD = os.path.join(ROOT, 'docs', 'faults.md')
CUT = ' …'        # a line longer than LINE_CHARS is given as its start, then CUT
LINE_CHARS = 150


def _cells(line: str) -> list[str]:
  parts = re.split(r'(?<!\\)\|', line.strip())[1:-1]
  return [p.strip().replace('\\|', '|') for p in parts]


def _code(cell: str) -> str:
  return cell[1:-1] if cell.startswith('`') and cell.endswith('`') else cell


def doc_section(title: str) -> list[str]:
  """The lines of docs/faults.md under '## title', up to the next '## '."""
  lines, out, on = open(FAULTS_MD).read().splitlines(), [], False
  for line in lines:
    if line.startswith('## '):
      on = line[3:].strip() == title
    elif on:
      out.append(line)
  return out


def bad_input_rows() -> list[tuple[str, int, str, str]]:
  """(input, exit, first stderr line, written?) of each row of the bad-input table."""
  rows = [_cells(l) for l in doc_section('Bad input') if l.startswith('| `')]
  return [(_code(a), int(b), _code(c), d) for a, b, c, d in rows]


def fixtures() -> dict[str, str | bytes]:
  """The files the inputs name: '- `path`: `python literal`' lines of the section."""
  out = {}
  for line in doc_section('Files the inputs name'):
    m = re.match(r'- `([^`]+)`: `(.+)`$', line.strip())
    if m:
      out[m.group(1)] = ast.literal_eval(m.group(2))
  return out


def _tree(top) -> set[str]:
  return {os.path.relpath(os.path.join(d, f), top) for d, ds, fs in os.walk(top)
          for f in fs + ds}


def measure(given: str, tmp):
  """Runs `launch.py <given>` in tmp/cwd with the fixture files, its Hugging Face and
  user caches in tmp too; returns ((exit, first stderr line as the table gives it, the
  stdout lines, what it wrote: 'nothing' or the new paths), the whole stderr)."""
  import shlex
  cwd = os.path.join(tmp, 'cwd')
  for path, content in fixtures().items():
    os.makedirs(os.path.dirname(os.path.join(cwd, path)) or cwd, exist_ok=True)
    with open(os.path.join(cwd, path), 'wb' if isinstance(content, bytes) else 'w') as f:
      f.write(content)
  before = _tree(cwd)
  p = launch(*shlex.split(given), cwd=cwd, HF_HOME=os.path.join(tmp, 'hf'),
             XDG_CACHE_HOME=os.path.join(tmp, 'xdg'), HF_DATASETS_OFFLINE='1')
  new = sorted(_tree(cwd) - before) + [d for d in ('hf', 'xdg/seqlab')   # not matplotlib's
                                       if os.path.exists(os.path.join(tmp, d))]

  def first(text):
    line = text.strip().splitlines()[0] if text.strip() else ''
    line = line.replace(cwd, '<cwd>').replace(ROOT, '<repo>')
    return line if len(line) <= LINE_CHARS else line[:LINE_CHARS] + CUT

  stdout = [first(line) for line in p.stdout.splitlines() if line.strip()]
  return (p.returncode, first(p.stderr) or '(none)', stdout,
          ', '.join(new) or 'nothing'), p.stderr


@pytest.mark.parametrize('given, status, line, written', bad_input_rows(),
                         ids=[r[0][:60] for r in bad_input_rows()])
def test_bad_input_table(given, status, line, written, tmp_path):
  (got_status, got_line, stdout, got_written), stderr = measure(given, str(tmp_path))
  assert (got_status, got_written) == (status, written), stderr
  if line.startswith('(none)'):      # a run that succeeds: nothing on stderr
    assert got_line == '(none)', stderr
    if 'stdout: `' in line:
      expected = line.split('stdout: `', 1)[1].rstrip('`')
      expected = expected.removesuffix(CUT).removesuffix('…')
      assert any(out.startswith(expected) for out in stdout), stdout   # a line of stdout
  else:
    assert len(stderr.strip().splitlines()) == 1, stderr   # one line, no traceback
    assert got_line.removesuffix(CUT).startswith(line.removesuffix(CUT)), got_line


def test_bad_input_table_covers_every_old_case_and_fixture():
  rows = bad_input_rows()
  assert len(rows) >= 40 and len({r[0] for r in rows}) == len(rows)   # no row twice
  assert all(r[3] == 'nothing' for r in rows)   # bad input writes nothing, anywhere
  names = set(fixtures())
  assert {'syntax_error.py', 'binary.txt'} <= names



def test_a_model_the_code_cannot_build_is_one_config_error(monkeypatch):
  """Any error the model code raises while building (abstractly, in sweep.validate,
  before the workdir is touched) is one ConfigError naming the model and task."""
  from seqlab import config as seqlab_config
  from seqlab import models, sweep
  c = seqlab_config.load('long_range')
  with c.unlocked():
    c.sweep.models, c.sweep.seq_lens = ['gru'], [10]

  def cannot_build(cfg):
    raise TypeError('Shapes must be 1D sequences of concrete values of integer type,\n'
                    'got (32, 16.0).')

  monkeypatch.setattr(models, 'num_params', cannot_build)
  with pytest.raises(sweep.ConfigError, match="model 'gru' cannot be built for task "
                                              "'adding' with this config: Shapes") as e:
    sweep.validate(c)
  assert '\n' not in str(e.value)


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
        '--config.train.eval_examples=8', '--config.train.log_every=10',
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
  p = launch('--help', cwd=tmp_path)
  assert p.returncode == 0 and not p.stderr, p.stderr   # asked for: not an error
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


if __name__ == '__main__':   # measure the table: each row as docs/faults.md gives it
  import tempfile
  for given, *_ in bad_input_rows():
    with tempfile.TemporaryDirectory() as tmp:
      (status, line, stdout, written), _ = measure(given, tmp)
    if line == '(none)' and stdout:
      line = f'(none) stdout: `{stdout[0]}`'
      shown = line
    else:
      shown = f'`{line}`'
    cell = lambda s: s.replace('|', '\\|')
    print(f'| `{cell(given)}` | {status} | {cell(shown)} | {written} |', flush=True)
