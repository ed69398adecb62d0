"""Workdirs in a Cloud Storage bucket (gs://), against a local emulator: results and
metrics files, figures, orbax checkpoints, a launch.py run, and a SIGTERM-and-resume
run that ends bitwise equal to an uninterrupted local one."""
import os
import signal
import subprocess
import sys
import uuid

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from seqlab import sweep, train
from seqlab.data import tasks
from seqlab.infra import checkpoint, storage, writer
from seqlab.studies import long_range, plot_style

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def gs_dir(gcs_bucket):
  """A fresh gs:// folder per test."""
  return f'{gcs_bucket[0]}/{uuid.uuid4().hex[:8]}'


def test_urls_are_absolute_and_other_schemes_refused():
  assert storage.abspath('gs://b/x') == 'gs://b/x'
  assert storage.abspath('runs/x') == os.path.abspath('runs/x')
  assert storage.join('gs://b/x', 'y') == 'gs://b/x/y'
  with pytest.raises(storage.SchemeError, match=r'scheme s3:// is not supported.*gs://'):
    storage.check('s3://b/x')
  storage.check('gs://b/x')
  storage.check('runs/x')


def test_results_files_in_a_bucket(gs_dir):
  path = f'{gs_dir}/results.jsonl'
  assert writer.read_jsonl(path) == [] and not storage.exists(path)
  writer.append_jsonl_atomic(path, {'point': 'a', 'loss': np.float32(0.5)})
  writer.append_jsonl_atomic(path, {'point': 'b', 'loss': float('nan')})
  assert writer.read_jsonl(path) == [{'point': 'a', 'loss': 0.5}, {'point': 'b', 'loss': None}]
  writer.write_json(f'{gs_dir}/sub/config.json', {'x': [1, 2]})
  assert writer.read_json(f'{gs_dir}/sub/config.json') == {'x': [1, 2]}
  assert storage.listdir(gs_dir) == ['results.jsonl', 'sub']
  assert storage.glob(gs_dir, '*.jsonl') == [path]
  storage.rmtree(f'{gs_dir}/sub')
  assert storage.listdir(gs_dir) == ['results.jsonl']


def test_metric_writer_in_a_bucket_rewrites_on_flush_and_resumes(gs_dir):
  m = writer.MetricWriter(gs_dir, flush_every_s=float('inf'))
  for s in (1, 2, 3):
    m.write(s, {'loss': 1.0 / s})
  assert not storage.exists(m.path)           # buffered: a bucket object has no append
  m.flush()
  assert [r['step'] for r in writer.read_jsonl(m.path)] == [1, 2, 3]
  m.write(4, {'loss': 0.25, 'eval_loss': 0.3})
  m.close()
  writer.truncate_jsonl(m.path, 2)            # what a resume from step 2 does
  m = writer.MetricWriter(gs_dir, flush_every_s=0)  # flushes every row
  m.write(3, {'loss': 0.5})
  assert [r['step'] for r in writer.read_jsonl(m.path)] == [1, 2, 3]
  m.close()


def test_metrics_in_a_bucket_upload_only_their_new_rows(gs_dir, monkeypatch):
  """Each flush composes its rows onto the object: the bytes uploaded over a run are
  the object's size (linear), not the sum of its sizes at each flush (quadratic)."""
  uploads, real = [], storage.write_object
  monkeypatch.setattr(storage, 'write_object',
                      lambda path, data: (uploads.append(len(data)), real(path, data)))
  m = writer.MetricWriter(gs_dir, flush_every_s=float('inf'))
  for s in range(1, 41):
    m.write(s, {'loss': 1.0 / s})
    if s % 4 == 0:
      m.flush()
  m.close()
  size = len(storage.read_bytes(m.path))
  assert [r['step'] for r in writer.read_jsonl(m.path)] == list(range(1, 41))
  assert len(uploads) == 10 and sum(uploads) == size   # every byte uploaded once
  assert storage.listdir(gs_dir) == ['metrics.jsonl']   # no part left behind
  # past the compose limit the object is written whole once, then composes again
  monkeypatch.setattr(storage, 'COMPOSE_LIMIT', 3)
  m = writer.MetricWriter(gs_dir, flush_every_s=0)
  for s in range(41, 45):
    m.write(s, {'loss': 1.0 / s})
  m.close()
  assert [r['step'] for r in writer.read_jsonl(m.path)] == list(range(1, 45))


def test_figures_saved_to_a_bucket(gs_dir):
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots()
  ax.plot([0, 1], [1, 0])
  paths = plot_style.save(fig, f'{gs_dir}/figures/line')
  assert paths == [f'{gs_dir}/figures/line.png', f'{gs_dir}/figures/line.pdf']
  assert storage.read_bytes(paths[0])[:8] == b'\x89PNG\r\n\x1a\n'
  assert storage.read_bytes(paths[1])[:5] == b'%PDF-'


def test_checkpoints_in_a_bucket_walk_back_past_a_damaged_step(gs_dir):
  ckpt = checkpoint.CheckpointManager(f'{gs_dir}/checkpoints', every=1, keep=3)
  state = {'w': jnp.arange(6.0).reshape(2, 3), 'step': jnp.int32(0)}
  for step in (1, 2):
    ckpt.save(step, {'w': state['w'] * step, 'step': jnp.int32(step)})
  assert ckpt.all_steps() == [1, 2]
  restored, step = ckpt.restore_latest(checkpoint.abstract(state))
  assert step == 2 and np.array_equal(restored['w'], np.asarray(state['w']) * 2)
  ckpt.close()
  # Damage step 2: delete its array data; restore falls back to step 1, with a note.
  import fsspec
  fs = fsspec.filesystem('gs')
  data = [p for p in fs.find(f'{gs_dir}/checkpoints/2') if '/d/' in p]
  assert data
  fs.rm(data)
  notes = []
  ckpt = checkpoint.CheckpointManager(f'{gs_dir}/checkpoints', every=1,
                                      log=lambda *a, **k: notes.append(a[0]))
  restored, step = ckpt.restore_latest(checkpoint.abstract(state))
  ckpt.close()
  assert step == 1 and np.array_equal(restored['w'], np.asarray(state['w']))
  assert len(notes) == 1 and 'checkpoint step 2' in notes[0]


def _env(gcs_env):
  return dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu', PYTHONPATH=ROOT,
              PYTHONUNBUFFERED='1', **gcs_env)


LAUNCH = [sys.executable, 'launch.py', '--config=experiments/long_range.py',
          '--config.num_devices=1', '--config.model.hidden=8', '--config.model.param_budget=0', '--lrs=', '--config.train.batch_size=8',
          '--config.train.eval_examples=8', '--config.train.log_every=5',
          '--config.train.steps=30', '--config.train.checkpoint_every=10', '--tasks=adding',
          '--seq_lens=10', '--seeds=0', '--models=gru']


def test_launch_with_a_bucket_workdir_matches_a_local_one(gcs_bucket, gs_dir, tmp_path):
  env = _env(gcs_bucket[1])
  local = subprocess.run(LAUNCH + [f'--workdir={tmp_path}'], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
  assert local.returncode == 0, local.stderr
  r = subprocess.run(LAUNCH + [f'--workdir={gs_dir}'], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=180)
  assert r.returncode == 0, r.stderr
  assert 'is a bucket; it is not locked' in r.stdout
  assert f'results: {gs_dir}/results.jsonl' in r.stdout
  a, b = writer.read_jsonl(f'{tmp_path}/results.jsonl'), writer.read_jsonl(f'{gs_dir}/results.jsonl')
  assert [x['final_loss'] for x in a] == [x['final_loss'] for x in b]
  point = f'{gs_dir}/gru-adding-T10-s0'
  assert [x['step'] for x in writer.read_jsonl(f'{point}/metrics.jsonl') if 'loss' in x] == \
      list(range(1, 31))
  kept = storage.listdir(f'{point}/checkpoints')  # the same retention as on a disk
  assert kept == storage.listdir(f'{tmp_path}/gru-adding-T10-s0/checkpoints') and '30' in kept
  # The same command again skips the finished point; plots read the bucket's results.
  again = subprocess.run(LAUNCH + [f'--workdir={gs_dir}'], env=env, cwd=ROOT,
                         capture_output=True, text=True, timeout=180)
  assert again.returncode == 0 and 'already finished; skipping' in again.stdout
  figures = long_range.draw(gs_dir)
  assert figures and all(storage.exists(p) for p in figures)
  assert storage.exists(f'{gs_dir}/table.md')
  assert sweep.finished(gs_dir).keys() == {'gru-adding-T10-s0'}


def test_sigterm_then_resume_in_a_bucket_is_bitwise_the_local_run(gcs_bucket, gs_dir, tmp_path):
  env = _env(gcs_bucket[1])
  cmd = LAUNCH + ['--config.train.steps=60', '--config.train.checkpoint_every=0']
  ref = subprocess.run(cmd + [f'--workdir={tmp_path}'], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=180)
  assert ref.returncode == 0, ref.stderr
  p = subprocess.Popen(cmd + [f'--workdir={gs_dir}'], env=env, cwd=ROOT, text=True,
                       stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
  out = []
  for line in p.stdout:  # SIGTERM once training is under way (step 10 logged)
    out.append(line)
    if 'step     10/60' in line:
      p.send_signal(signal.SIGTERM)
      break
  out.append(p.stdout.read())
  p.wait(timeout=120)
  out = ''.join(out)
  assert p.returncode == 143 and 'SIGTERM: saved checkpoint at step' in out, out
  point = f'{gs_dir}/gru-adding-T10-s0'
  assert not storage.exists(f'{point}/result.json')
  r = subprocess.run(cmd + [f'--workdir={gs_dir}'], env=env, cwd=ROOT,
                     capture_output=True, text=True, timeout=180)
  assert r.returncode == 0, r.stderr
  assert 'resuming from checkpoint step' in r.stdout
  assert [x['step'] for x in writer.read_jsonl(f'{point}/metrics.jsonl') if 'loss' in x] == \
      list(range(1, 61))  # no step lost or logged twice across the interruption
  local = writer.read_json(f'{tmp_path}/gru-adding-T10-s0/result.json')
  bucket = writer.read_json(f'{point}/result.json')
  assert bucket['final_loss'] == local['final_loss']
  a = _restore(f'{tmp_path}/gru-adding-T10-s0')
  b = _restore(point)
  assert a[1] == b[1] == 60
  for x, y in zip(jax.tree.leaves(a[0]), jax.tree.leaves(b[0])):
    assert np.array_equal(np.asarray(x), np.asarray(y))


def _restore(point_dir):
  c = ml_collections.ConfigDict(writer.read_json(f'{point_dir}/config.json'))
  task = tasks.build(c.task)
  cfg = train.model_config(c, task, int(c.task.seq_len))
  _, state = train.init_state(cfg, int(c.seed), train.make_optimizer(c.train))
  ckpt = checkpoint.CheckpointManager(f'{point_dir}/checkpoints', every=0)
  out = ckpt.restore_latest(checkpoint.abstract(state))
  ckpt.close()
  return out


def test_launch_refuses_other_url_schemes(tmp_path):
  r = subprocess.run(LAUNCH + ['--workdir=s3://bucket/run'], cwd=ROOT, capture_output=True,
                     text=True, timeout=120, env=dict(os.environ, XLA_FLAGS='',
                                                      JAX_PLATFORMS='cpu'))
  assert r.returncode == 2
  assert r.stderr.strip().splitlines()[-1] == (
      'error: workdir s3://bucket/run: scheme s3:// is not supported; use a local path or '
      'gs://bucket/path')
