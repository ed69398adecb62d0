"""Fault injection with real processes: Ctrl-C at a seeded random step, kill -9 during a
checkpoint save, torn last lines left by a killed writer, two launches racing for one
workdir, the disk filling while metrics are written. Each run resumes (or stops with
one line), and nothing that had been saved is lost: final parameters are compared
bitwise with an uninterrupted run, files row by row. (MaxText's determinism tests and
orbax's atomic commits are the anchors; tests/test_resume.py covers kill -9 between
saves, SIGTERM and a full disk on results.jsonl.)"""
import errno
import os
import random
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from seqlab import evaluate, sweep, train, workdir
from seqlab.infra import preemption, writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu', PYTHONPATH=ROOT)
SEED = 21   # the random kill points below are drawn from this seed: a failure reproduces
STEPS = 300
POINT = 'gru-adding-T10-s0'
FLAGS = ['--config=experiments/long_range.py', '--tasks=adding', '--seq_lens=10',
         '--seeds=0', '--config.num_devices=1', '--config.model.hidden=8', '--config.model.param_budget=0', '--lrs=',
         '--config.train.batch_size=8', '--config.train.eval_examples=8',
         '--config.train.log_every=50', f'--config.train.steps={STEPS}',
         '--config.train.checkpoint_every=10']


def command(workdir, models='gru', steps=STEPS):
  flags = [f for f in FLAGS if not f.startswith('--config.train.steps')]
  return [sys.executable, 'launch.py', *flags, f'--config.train.steps={steps}',
          f'--models={models}', f'--workdir={workdir}']


def start(workdir, **kw):
  return subprocess.Popen(command(workdir, **kw), env=ENV, cwd=ROOT, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)


def launch(workdir, **kw):
  return subprocess.run(command(workdir, **kw), env=ENV, cwd=ROOT, capture_output=True,
                        text=True, timeout=300)


def metric_steps(point_dir):
  return [r['step'] for r in writer.read_jsonl(os.path.join(point_dir, 'metrics.jsonl'))
          if 'loss' in r]


def wait_for(p, done, what):
  while p.poll() is None and not done():
    time.sleep(0.002)
  assert p.poll() is None, f'the run ended before {what}'


def final_leaves(point_dir):
  _, state, step, _, _ = evaluate.restore(point_dir, 'latest')
  assert step == STEPS
  return [np.asarray(x) for x in jax.tree.leaves(state)]


def assert_bitwise(ref_dir, point_dir):
  for x, y in zip(final_leaves(ref_dir), final_leaves(point_dir), strict=True):
    assert np.array_equal(x, y)
  assert metric_steps(point_dir) == list(range(1, STEPS + 1))  # every step once


@pytest.fixture(scope='module')
def reference(tmp_path_factory):
  """The uninterrupted run every fault is compared with."""
  w = tmp_path_factory.mktemp('ref') / 'w'
  r = launch(w)
  assert r.returncode == 0, r.stderr
  return w


def test_ctrl_c_saves_at_the_next_step_and_resumes_bitwise(tmp_path, reference):
  w = tmp_path / 'w'
  at = random.Random(SEED).randint(12, 60)   # metrics lines seen before Ctrl-C
  p = start(w)
  wait_for(p, lambda: len(metric_steps(w / POINT)) >= at, f'{at} metrics lines')
  p.send_signal(signal.SIGINT)
  out, err = p.communicate(timeout=120)
  assert p.returncode == 130, err
  assert 'Ctrl-C: saving a checkpoint at the end of this step' in out
  (line,) = err.strip().splitlines()   # one line on stderr, no traceback
  assert line.startswith('interrupted: ') and 'Ctrl-C: saved checkpoint at step' in line
  assert 'run the same command to resume' in line
  saved = int(line.split('at step ')[1].split(';')[0])
  assert at <= saved < STEPS and not (w / POINT / 'result.json').exists()
  r = launch(w)
  assert r.returncode == 0, r.stderr
  assert f'resuming from checkpoint step {saved}' in r.stdout
  assert_bitwise(reference / POINT, w / POINT)


def test_a_second_ctrl_c_stops_at_once():
  with preemption.Preemption(notice=lambda *a, **k: None) as stop:
    os.kill(os.getpid(), signal.SIGINT)
    assert stop.requested and stop.name == 'Ctrl-C' and stop.exit_status() == 130
    with pytest.raises(KeyboardInterrupt):
      os.kill(os.getpid(), signal.SIGINT)
  assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_kill9_during_a_checkpoint_save_resumes_bitwise(tmp_path, reference):
  w = tmp_path / 'w'
  ckpts = w / POINT / 'checkpoints'
  skip = random.Random(SEED + 1).randint(1, 5)   # let this many saves complete first

  def saving():
    names = os.listdir(ckpts) if ckpts.is_dir() else []
    return (sum(n.isdigit() for n in names) >= min(skip, 2) and
            any('.orbax-checkpoint-tmp' in n for n in names))

  p = start(w)
  wait_for(p, saving, "orbax's temporary checkpoint folder")
  p.send_signal(signal.SIGKILL)
  p.communicate()
  assert p.returncode == -signal.SIGKILL
  r = launch(w)
  assert r.returncode == 0, r.stderr
  assert 'resuming from checkpoint step' in r.stdout
  assert not [n for n in os.listdir(ckpts) if '.orbax-checkpoint-tmp' in n]
  assert_bitwise(reference / POINT, w / POINT)


def test_torn_last_lines_are_dropped_and_every_saved_row_kept(tmp_path, reference):
  w = tmp_path / 'w'
  p = start(w, models='rnn,gru')
  at = random.Random(SEED + 2).randint(12, 60)
  wait_for(p, lambda: len(metric_steps(w / POINT)) >= at, 'the second point was mid-way')
  p.send_signal(signal.SIGKILL)
  p.communicate()
  first = writer.read_jsonl(w / 'results.jsonl')
  assert [r['point'] for r in first] == ['rnn-adding-T10-s0']
  kept_metrics = (w / POINT / 'metrics.jsonl').read_text().splitlines()
  for name in ('results.jsonl', f'{POINT}/metrics.jsonl'):   # a killed writer's half line
    with open(w / name, 'a') as f:
      f.write('{"step": 9999, "loss": 0.12')
  r = launch(w, models='rnn,gru')
  assert r.returncode == 0, r.stderr
  assert '[rnn-adding-T10-s0] already finished; skipping' in r.stdout
  lines = (w / 'results.jsonl').read_text().splitlines()
  rows = writer.read_jsonl(w / 'results.jsonl')
  assert len(lines) == len(rows) == 2 and rows[0] == first[0]   # row by row, none torn
  metrics = (w / POINT / 'metrics.jsonl').read_text().splitlines()
  resumed = int(r.stdout.split('resuming from checkpoint step ')[1].split()[0])
  assert metrics[:resumed] == kept_metrics[:resumed]   # saved rows kept as they were
  assert_bitwise(reference / POINT, w / POINT)


def test_two_launches_racing_for_one_workdir(tmp_path):
  w = tmp_path / 'w'
  procs = [start(w, steps=100000) for _ in range(2)]
  while all(p.poll() is None for p in procs):
    time.sleep(0.05)
  loser = next(p for p in procs if p.poll() is not None)
  winner = next(p for p in procs if p is not loser)
  _, err = loser.communicate()
  assert loser.returncode == 2, err
  assert err.strip().splitlines() == [err.strip()] and 'is in use by another launch' in err
  wait_for(winner, lambda: len(metric_steps(w / POINT)) >= 20, 'the winner trained')
  winner.send_signal(signal.SIGINT)
  out, err = winner.communicate(timeout=120)
  assert winner.returncode == 130 and 'saved checkpoint at step' in err, err
  assert writer.read_json(w / 'config.json')['train']['steps'] == 100000


def _tiny(steps=40):
  from experiments import long_range
  c = long_range.get_config()
  c.num_devices = 1
  c.model.name, c.model.hidden = 'gru', 8
  c.model.param_budget, c.sweep.lrs = 0, []   # the width given, train.lr
  c.task.seq_len = 10
  c.train.update(dict(batch_size=8, eval_examples=8, log_every=100, steps=steps,
                      checkpoint_every=10))
  return c


def _untimed(workdir):
  """metrics.jsonl rows without the one timing (tokens/s), which differs run to run."""
  return [{k: v for k, v in r.items() if k != 'tokens_per_s'}
          for r in writer.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))]


def test_disk_full_while_writing_metrics_stops_with_one_line(tmp_path, monkeypatch):
  ref, cut = str(tmp_path / 'ref'), str(tmp_path / 'cut')
  train.train(_tiny(), ref, verbose=False)
  full_at = random.Random(SEED + 3).randint(15, 35)
  write = writer.MetricWriter.write

  def write_until_full(self, step, metrics):
    if step >= full_at and self._f is not None:
      raise writer._write_error(self.path, OSError(errno.ENOSPC, 'No space left on device'))
    return write(self, step, metrics)

  monkeypatch.setattr(writer.MetricWriter, 'write', write_until_full)
  with pytest.raises(writer.WriteError, match='no space left on the device') as e:
    train.train(_tiny(), cut, verbose=False)
  assert '\n' not in str(e.value) and 'run the same command again' in str(e.value)
  monkeypatch.setattr(writer.MetricWriter, 'write', write)
  ref_rows = _untimed(ref)
  assert _untimed(cut) == ref_rows[:full_at - 1]   # every row written before the disk filled
  train.train(_tiny(), cut, verbose=False)     # space again: the same call resumes
  assert _untimed(cut) == ref_rows
  a = evaluate.restore(ref, 'latest')[1]
  b = evaluate.restore(cut, 'latest')[1]
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    assert np.array_equal(np.asarray(x), np.asarray(y))


def test_results_files_follow_the_umask(tmp_path):
  old = os.umask(0o022)
  try:
    path = str(tmp_path / 'results.jsonl')
    writer.append_jsonl_atomic(path, {'point': 'a'})
    writer.write_json(str(tmp_path / 'config.json'), {'a': 1})
    assert oct(os.stat(path).st_mode & 0o777) == oct(0o644)
    assert oct(os.stat(tmp_path / 'config.json').st_mode & 0o777) == oct(0o644)
    os.umask(0o077)
    writer.write_json(str(tmp_path / 'result.json'), {'a': 1})
    assert oct(os.stat(tmp_path / 'result.json').st_mode & 0o777) == oct(0o600)
  finally:
    os.umask(old)


def test_workdir_full_disk_or_not_writable_is_one_line_and_nothing_left(tmp_path, monkeypatch):
  c = _tiny()
  monkeypatch.setattr(os, 'fsync', lambda fd: (_ for _ in ()).throw(
      OSError(errno.ENOSPC, 'No space left on device')))
  with pytest.raises(sweep.ConfigError, match='no space left on the device') as e:
    workdir.open_workdir(c, str(tmp_path / 'new' / 'w'))
  assert '\n' not in str(e.value)
  assert not (tmp_path / 'new').exists()   # what open_workdir made is gone again
  monkeypatch.undo()
  monkeypatch.setattr(os, 'access', lambda path, mode: False)   # as a user who may not write
  with pytest.raises(sweep.ConfigError, match='is not writable by this user'):
    workdir.open_workdir(c, str(tmp_path / 'w2'))
  assert not (tmp_path / 'w2').exists()


EMULATOR = """
import sys, time
import gcs_emulator  # its download handler sends the generation headers tensorstore needs
from gcp_storage_emulator import server
server.create_server('localhost', int(sys.argv[1]), in_memory=False, default_bucket=sys.argv[2],
                     data_dir=sys.argv[3]).start()
while True:
  time.sleep(3600)
"""


def start_emulator(port, data_dir):
  """A Cloud Storage emulator that keeps its objects in data_dir, so it can die and come
  back with them (tests/gcs_emulator.py's fixture keeps them in memory)."""
  import socket
  log = data_dir.parent / 'emulator.log'
  for _ in range(60):   # a restart may find the port still held for a moment: try again
    with open(log, 'w') as f:
      p = subprocess.Popen([sys.executable, '-c', EMULATOR, str(port), 'seqlab-faults',
                            str(data_dir)], env=dict(os.environ, PYTHONPATH=os.path.join(ROOT, 'tests')),
                           stdout=subprocess.DEVNULL, stderr=f)
    while p.poll() is None:
      try:
        socket.create_connection(('localhost', port), timeout=1).close()
        return p
      except OSError:
        time.sleep(0.1)
    time.sleep(1)
  raise RuntimeError(f'the storage emulator did not start: {log.read_text()[-2000:]}')


def test_bucket_that_dies_mid_run_and_comes_back(tmp_path, reference):
  import socket
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  url = f'http://localhost:{port}'
  env = dict(ENV, STORAGE_EMULATOR_HOST=url, TENSORSTORE_GCS_HTTP_URL=url,
             GOOGLE_AUTH_TOKEN_FOR_TESTING='x', GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT='false')
  data = tmp_path / 'bucket'
  ckpts = data / '.cloudstorage' / 'seqlab-faults' / 'w' / POINT / 'checkpoints'
  emulator = start_emulator(port, data)
  try:
    cmd = command('gs://seqlab-faults/w')
    p = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
    saves = random.Random(SEED + 4).randint(2, 4)   # checkpoints written before it dies
    wait_for(p, lambda: ckpts.is_dir() and len(os.listdir(ckpts)) >= saves, f'{saves} saves')
    emulator.kill()
    emulator.wait()
    out, err = p.communicate(timeout=300)   # tensorstore and gcsfs retry for about a minute
    assert p.returncode == 1, err
    # tensorstore's C++ log names the test-only token; everything else is the one line
    lines = [l for l in err.splitlines() if 'GOOGLE_AUTH_TOKEN_FOR_TESTING' not in l]
    assert len(lines) == 1 and lines[0].startswith('error: could not '), err
    assert 'run the same command again to resume' in lines[0]
    emulator = start_emulator(port, data)   # the bucket is back, with what it held
    r = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    step = int(r.stdout.split('resuming from checkpoint step ')[1].split()[0])
    assert step >= 10 * (saves - 1)   # every save completed before the outage was kept
    keys = ('STORAGE_EMULATOR_HOST', 'TENSORSTORE_GCS_HTTP_URL', 'GOOGLE_AUTH_TOKEN_FOR_TESTING')
    before = {k: os.environ.get(k) for k in keys}   # the session's emulator (conftest), if any
    os.environ.update({k: env[k] for k in keys})
    try:
      assert_bitwise(reference / POINT, f'gs://seqlab-faults/w/{POINT}')
    finally:
      for k, v in before.items():
        if v is None:
          os.environ.pop(k, None)
        else:
          os.environ[k] = v
      import gcsfs   # a filesystem made for this emulator must not serve the next test
      gcsfs.GCSFileSystem.clear_instance_cache()
  finally:
    emulator.kill()


# ------------------------------------------------------------ shared workdirs, exits, totals
def test_a_crafted_results_row_deletes_nothing_outside_the_workdir(tmp_path):
  """--rerun reads point names from results.jsonl, which is data (a shared workdir may
  come from anyone): only points of the config's own list with a safe name are
  forgotten; '../victim/important', '', '.', an absolute path or a link never are."""
  from seqlab.studies import long_range
  victim = tmp_path / 'victim' / 'important'
  victim.mkdir(parents=True)
  (victim / 'data').write_text('keep')
  w = tmp_path / 'w'
  (w / 'figures').mkdir(parents=True)
  own = 'gru-adding-T10-s0'
  (w / own).mkdir()
  (w / own / 'config.json').write_text('{}')   # what train writes first
  os.symlink(victim, w / 'gru-adding-T10-s1')   # a point folder that links outside
  crafted = ['../victim/important', '', '.', '..', str(victim), 'figures', 'gru-adding-T10-s1']
  for n in crafted + [own]:
    writer.append_jsonl_atomic(str(w / 'results.jsonl'), {'point': n, 'diverged_at_step': 3})
  c = _tiny()
  c.sweep.update(dict(models=['gru'], tasks=['adding'], seq_lens=[10], seeds=[0, 1]))
  names = workdir.own_point_names(long_range, c)
  assert workdir.select_rerun(str(w), ['diverged'], names) == [own]
  assert workdir.select_rerun(str(w), ['*'], names) == [own]
  assert workdir.select_rerun(str(w), ['*'], None) == [own]   # any study: the path rule alone
  workdir.forget(str(w), crafted + [own])   # even when asked for directly
  assert (victim / 'data').read_text() == 'keep' and (w / 'figures').is_dir()
  assert os.path.islink(w / 'gru-adding-T10-s1') and not (w / own).exists()
  assert [r['point'] for r in writer.read_jsonl(str(w / 'results.jsonl'))] == crafted


def test_compile_cache_is_per_user_outside_the_workdir_and_capped(tmp_path):
  env = {k: v for k, v in ENV.items() if not k.startswith(('JAX_COMPILATION_CACHE',
                                                           'JAX_PERSISTENT_CACHE'))}
  env['XDG_CACHE_HOME'] = str(tmp_path / 'xdg')
  code = ('import jax; from seqlab import jobs; jobs.compile_cache("w"); '
          'print(jax.config.jax_compilation_cache_dir, jax.config.jax_compilation_cache_max_size)')
  r = subprocess.run([sys.executable, '-c', code], env=env, cwd=tmp_path, capture_output=True,
                     text=True, timeout=120)
  cache = tmp_path / 'xdg' / 'seqlab' / 'jax'
  assert r.returncode == 0 and r.stdout.split() == [str(cache), str(2 * 2 ** 30)], r.stderr
  assert os.stat(cache).st_mode & 0o777 == 0o700 and not (tmp_path / 'w').exists()
  os.chmod(cache, 0o777)   # a folder others may write to: never a source of executables
  r = subprocess.run([sys.executable, '-c', code], env=env, cwd=tmp_path, capture_output=True,
                     text=True, timeout=120)
  assert r.stdout.splitlines()[0].startswith('note: the compilation cache') and \
      r.stdout.split()[-2] == 'None', r.stdout + r.stderr


def test_a_torn_compilation_cache_entry_is_removed_and_a_whole_one_kept(tmp_path):
  from jax._src.compilation_cache import compress_executable
  from seqlab import jobs
  whole = compress_executable(bytes(range(256)) * 64)
  (tmp_path / 'a-cache').write_bytes(whole)               # written without the cap
  (tmp_path / 'b-cache').write_bytes(whole[:len(whole) // 2])   # a kill mid-write
  (tmp_path / 'b-atime').write_bytes(bytes(8))
  assert jobs.repair_cache(str(tmp_path), capped=True) == 1
  assert (tmp_path / 'a-cache').read_bytes() == whole and (tmp_path / 'a-atime').exists()
  assert not (tmp_path / 'b-cache').exists() and not (tmp_path / 'b-atime').exists()
  assert jobs.repair_cache(str(tmp_path), capped=True) == 0   # each entry is read once


def test_the_umask_is_read_without_setting_it(monkeypatch):
  old = os.umask(0o027)
  try:
    def no_umask(mask):
      raise AssertionError('os.umask sets the mask: racy with threads creating files')
    monkeypatch.setattr(os, 'umask', no_umask)
    assert writer._umask() == 0o027
  finally:
    monkeypatch.undo()
    os.umask(old)


def test_appends_do_not_follow_a_symbolic_link(tmp_path):
  target = tmp_path / 'elsewhere'
  target.write_text('precious\n')
  point = tmp_path / 'p'
  point.mkdir()
  os.symlink(target, point / 'metrics.jsonl')
  with pytest.raises(writer.WriteError, match='is a symbolic link'):
    writer.MetricWriter(str(point)).write(1, {'loss': 1.0})
  os.symlink(target, tmp_path / 'results.jsonl')
  with pytest.raises(writer.WriteError, match='is a symbolic link'):
    writer.append_jsonl_atomic(str(tmp_path / 'results.jsonl'), {'point': 'a'})
  w = tmp_path / 'w'
  w.mkdir()
  os.symlink(target, w / '.lock')
  with pytest.raises(sweep.ConfigError, match='is a symbolic link'):
    workdir.open_workdir(_tiny(), str(w))
  assert target.read_text() == 'precious\n'


def test_override_keeps_the_old_config(tmp_path):
  w = str(tmp_path / 'w')
  for steps in (40, 50, 60):
    workdir.open_workdir(_tiny(steps), w, override=True)
    workdir._LOCKS.pop(os.path.abspath(w)).close()   # as when the launch exits
  assert writer.read_json(os.path.join(w, 'config.json'))['train']['steps'] == 60
  assert [writer.read_json(os.path.join(w, f'config.json.{n}'))['train']['steps']
          for n in (1, 2)] == [40, 50]


def test_result_totals_cover_every_segment_of_a_resumed_run(tmp_path, monkeypatch):
  from seqlab.data import tasks
  w = str(tmp_path / 'p')
  write = writer.MetricWriter.write

  def sigterm_at_step_25(self, step, metrics):
    write(self, step, metrics)
    if step == 25:
      os.kill(os.getpid(), signal.SIGTERM)

  monkeypatch.setattr(writer.MetricWriter, 'write', sigterm_at_step_25)
  with pytest.raises(SystemExit) as stopped:
    train.train(_tiny(30), w, verbose=False)
  assert stopped.value.code == 143   # saved, not finished: 128 + SIGTERM
  monkeypatch.setattr(writer.MetricWriter, 'write', write)
  result = train.train(_tiny(30), w, verbose=False)
  segs = writer.read_json(os.path.join(w, 'segments.json'))
  assert segs[0]['first_step'] == 0 and segs[0]['last_step'] == segs[1]['first_step'] > 25
  assert segs[1]['last_step'] == 30 and len(segs) == 2
  assert result['wall_s'] == pytest.approx(sum(s['wall_s'] for s in segs))
  assert result['wall_s'] > segs[1]['wall_s'] and result['compile_s'] == pytest.approx(
      sum(s['compile_s'] for s in segs))
  tokens_per_step = 8 * tasks.build(_tiny().task).input_len(10)
  assert result['tokens_per_s'] == pytest.approx(
      sum(s['steady_steps'] for s in segs) * tokens_per_step / sum(s['steady_s'] for s in segs))


def test_fault_table_names_the_tests_that_check_it():
  """docs/faults.md's fault table: each row names a test that exists, and every fault
  test of this module added for issue 33 has its row."""
  import ast
  import re
  text = open(os.path.join(ROOT, 'docs', 'faults.md')).read()
  section = text.split('\n## Faults\n', 1)[1]
  named = re.findall(r'\| `(tests/[\w/]+\.py)::(\w+)` \|$', section, re.M)
  assert len(named) >= 20
  for path, name in named:
    tree = ast.parse(open(os.path.join(ROOT, path)).read())
    assert name in {f.name for f in tree.body if isinstance(f, ast.FunctionDef)}, (path, name)
  here = {name for path, name in named if path == 'tests/test_failures.py'}
  for name in ('test_a_crafted_results_row_deletes_nothing_outside_the_workdir',
               'test_a_torn_compilation_cache_entry_is_removed_and_a_whole_one_kept',
               'test_appends_do_not_follow_a_symbolic_link',
               'test_result_totals_cover_every_segment_of_a_resumed_run'):
    assert name in here, name
