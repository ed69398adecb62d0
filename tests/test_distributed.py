"""Multi-host evidence on one machine: two real processes on localhost joined by
jax.distributed (gloo CPU collectives), each with one CPU device, through launch.py.

- a 2-process run that is killed (-9, in both processes, after a checkpoint) and run
  again finishes with bitwise the final parameters of the uninterrupted 2-process run,
  with its workdir on a local disk and in a gs:// bucket (a local Cloud Storage
  emulator), and its losses match a 1-process run on 2 virtual devices;
- a missing host is one line and exit status 1, not a hang;
- inconsistent cluster flags are one line and exit status 2.
"""
import os
import socket
import subprocess
import sys
import time
import uuid

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from seqlab.infra import distributed, storage, writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, 'tests', 'two_process_worker.py')
STEPS, EVERY, KILL_AT = 12, 5, 8
POINT = 'lstm-adding-T10-s0'
RUN_FLAGS = ['--config=experiments/long_range.py', '--models=lstm', '--tasks=adding',
             '--seq_lens=10', '--seeds=0', f'--config.train.steps={STEPS}',
             '--config.train.batch_size=4', '--config.train.log_every=4',
             f'--config.train.checkpoint_every={EVERY}', '--config.train.eval_examples=8',
             '--config.model.hidden=8', '--config.model.param_budget=0', '--lrs=']


def free_port() -> int:
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def env(num_devices: int = 1) -> dict:
  e = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONUNBUFFERED='1', PYTHONPATH=ROOT)
  e['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={num_devices}' if num_devices > 1 else ''
  return e


def run_two(workdir, kill_at=0, timeout=120):
  port = free_port()
  procs = [subprocess.Popen(
      [sys.executable, WORKER, str(kill_at), *RUN_FLAGS, f'--workdir={workdir}',
       f'--coordinator_address=localhost:{port}', '--num_processes=2', f'--process_id={i}',
       '--distributed_timeout=60'],
      cwd=ROOT, env=dict(env(), SEQLAB_PROCESS=str(i)), stdout=subprocess.PIPE,
      stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outs = []
  for p in procs:
    try:
      outs.append(p.communicate(timeout=timeout)[0])
    except subprocess.TimeoutExpired:
      for q in procs:
        q.kill()
      raise
  return [p.returncode for p in procs], outs


def final_state(workdir):
  """The train state saved at the last step, read on this process's first device."""
  path = storage.abspath(os.path.join(workdir, POINT, 'checkpoints', str(STEPS), 'default'))
  ckpt = ocp.StandardCheckpointer()
  meta = ckpt.metadata(path)
  meta = getattr(meta, 'item_metadata', meta)
  dev = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=dev), meta)
  return jax.tree.map(np.asarray, ckpt.restore(path, target))


def losses(workdir):
  rows = writer.read_jsonl(os.path.join(workdir, POINT, 'metrics.jsonl'))
  return {r['step']: r['loss'] for r in rows if 'loss' in r}


def test_two_processes_killed_and_resumed_match_uninterrupted(tmp_path, gcs_bucket):
  whole = str(tmp_path / 'whole')
  codes, outs = run_two(whole)
  assert codes == [0, 0], outs
  assert 'process 0 of 2; 1 local / 2 global cpu devices' in outs[0]
  a, la = final_state(whole), losses(whole)

  # Killed and resumed, with the workdir on this disk and then in a bucket.
  for cut in (str(tmp_path / 'cut'), f'{gcs_bucket[0]}/{uuid.uuid4().hex[:8]}/cut'):
    codes, outs = run_two(cut, kill_at=KILL_AT)
    assert codes == [-9, -9], outs  # both killed by SIGKILL, mid-run
    assert not storage.exists(os.path.join(cut, POINT, 'result.json'))
    assert storage.isdir(os.path.join(cut, POINT, 'checkpoints', str(EVERY)))
    codes, outs = run_two(cut)
    assert codes == [0, 0], outs
    assert f'resuming from checkpoint step {EVERY}' in outs[0], cut

    b = final_state(cut)
    assert int(a['step']) == int(b['step']) == STEPS
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)):
      np.testing.assert_array_equal(x, y)
    lb = losses(cut)
    assert sorted(la) == sorted(lb) == list(range(1, STEPS + 1))  # no step twice
    assert la == lb
    assert len(writer.read_jsonl(os.path.join(cut, 'results.jsonl'))) == 1  # process 0 writes

  # The same run in one process on 2 virtual devices: same losses to float tolerance.
  one = str(tmp_path / 'one')
  r = subprocess.run([sys.executable, 'launch.py', *RUN_FLAGS, f'--workdir={one}'],
                     cwd=ROOT, env=env(2), capture_output=True, text=True, timeout=120)
  assert r.returncode == 0, r.stderr[-2000:]
  l1 = losses(one)
  np.testing.assert_allclose([l1[s] for s in sorted(l1)], [la[s] for s in sorted(la)],
                             rtol=1e-5)


def test_missing_host_is_one_line_and_exit_1(tmp_path):
  port = free_port()
  p = subprocess.Popen(
      [sys.executable, 'launch.py', *RUN_FLAGS, f'--workdir={tmp_path}',
       f'--coordinator_address=localhost:{port}', '--num_processes=2', '--process_id=0',
       '--distributed_timeout=3'],
      cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  listening = set()
  while p.poll() is None:   # while process 0 waits: its coordinator's port, and no other
    for q in (port, port + 1):
      try:
        socket.create_connection(('localhost', q), timeout=0.2).close()
        listening.add(q)
      except OSError:
        pass
    time.sleep(0.1)
  _, err = p.communicate(timeout=60)
  assert p.returncode == 1
  assert listening == {port}, listening
  lines = [l for l in err.splitlines() if l.startswith('error:')]
  assert len(lines) == 1 and 'process(es) 1 of 2 did not join' in lines[0], err
  assert err.strip().splitlines() == lines, err  # jax's own logs kept off stderr
  assert not os.path.exists(tmp_path / 'results.jsonl')


def test_no_port_but_the_coordinators(tmp_path):
  """Only jax's coordination service listens: no check-in port beside it."""
  import inspect
  src = inspect.getsource(distributed)
  assert 'socket' not in src and 'PORT+1' not in src and 'rendezvous' not in src


@pytest.mark.parametrize('spec, message', [
    (distributed.ClusterSpec('localhost:1234'), '--num_processes, --process_id missing'),
    (distributed.ClusterSpec('localhost', 2, 0), 'HOST:PORT'),
    (distributed.ClusterSpec('h:1', 2, 2), 'must be in 0..1'),
    (distributed.ClusterSpec(None, 2, None), '--coordinator_address, --process_id missing'),
])
def test_bad_cluster_flags_are_named(spec, message):
  with pytest.raises(ValueError, match=message):
    distributed.validate(spec)


def test_bad_cluster_flags_exit_2(tmp_path):
  r = subprocess.run([sys.executable, 'launch.py', '--models=lstm', f'--workdir={tmp_path}',
                      '--coordinator_address=h:1', '--num_processes=2', '--process_id=5'],
                     cwd=ROOT, env=env(), capture_output=True, text=True, timeout=60)
  assert r.returncode == 2 and '--process_id=5 must be in 0..1' in r.stderr, r.stderr
  assert len(r.stderr.strip().splitlines()) == 1


def test_single_host_does_not_initialize():
  assert distributed.initialize(distributed.ClusterSpec()) is False


def test_mesh_splits_batches_over_data():
  from seqlab.infra import sharding
  mesh = sharding.make_mesh(4)
  assert dict(mesh.shape) == {'data': 4}
  batch = {'inputs': np.arange(8 * 3, dtype=np.float32).reshape(8, 3)}
  placed = sharding.place_batch(batch, mesh)['inputs']
  np.testing.assert_array_equal(np.asarray(placed), batch['inputs'])
  assert {s.data.shape for s in placed.addressable_shards} == {(2, 3)}  # 8 rows / 4
  assert sharding.process_slice(8) == slice(0, 8)  # one process feeds every row
  with pytest.raises(ValueError, match='not divisible by the 4 devices'):
    sharding.check_batch_size(6, mesh)


def test_the_coordinator_binds_to_its_own_address_not_every_interface(monkeypatch):
  """jax's default is [::]:PORT (every interface); process 0 binds the coordinator's
  address itself, both when it is given and when it is auto-detected (here from a Slurm
  environment, the one jax detects without a TPU metadata server)."""
  import jax
  seen = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kw: seen.append(kw))
  monkeypatch.delenv('JAX_COORDINATOR_BIND_ADDRESS', raising=False)
  distributed.initialize(distributed.ClusterSpec('10.0.0.2:8476', 2, 0, timeout_s=5))
  assert seen[-1]['coordinator_bind_address'] == '10.0.0.2:8476'
  for k, v in dict(SLURM_JOB_ID='100', SLURM_STEP_NODELIST='localhost', SLURM_NTASKS='2',
                   SLURM_PROCID='1', SLURM_LOCALID='0').items():
    monkeypatch.setenv(k, v)
  distributed.initialize(distributed.ClusterSpec(timeout_s=5, auto=True))
  port = 100 % 4096 + 61440   # jax's Slurm port (jax/_src/clusters/slurm_cluster.py)
  assert seen[-1]['coordinator_address'] == f'localhost:{port}'
  assert seen[-1]['coordinator_bind_address'] == f'localhost:{port}'
  assert (seen[-1]['num_processes'], seen[-1]['process_id']) == (2, 1)
  monkeypatch.setenv('JAX_COORDINATOR_BIND_ADDRESS', '10.1.2.3:8476')   # a user's choice wins
  distributed.initialize(distributed.ClusterSpec('10.0.0.2:8476', 2, 0, timeout_s=5))
  assert 'coordinator_bind_address' not in seen[-1]
