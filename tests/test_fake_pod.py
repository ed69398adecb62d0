"""The simulated pod (seqlab/infra/fake_pod.py): a fake `gcloud` on PATH lets
`launch.py --tpu=NAME --zone=Z` run end to end on this machine, 2 workers as 2 local
processes joined by jax.distributed's auto-detection (--distributed).

- the fake gcloud itself: hosts per slice, scp both ways with `~` as a worker's home,
  ssh in every worker with its id and the coordinator, a missing pod is exit 1,
  `storage ls` on a bucket (the local emulator);
- end to end through launch.py: create, copy, unpack (--notpu_install), start, stream
  process 0, fetch. Both workers are killed (-9) once a checkpoint is written; the
  launcher stops with one error line; the same command again reuses the pod, resumes
  from the checkpoint and finishes: the point in results.jsonl, every step once in its
  metrics, and the fetched copy of the workdir.
"""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from seqlab.infra import fake_pod, writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
POINT, STEPS, EVERY = 'gru-adding-T10-s0', 40, 10


@pytest.fixture
def pods(tmp_path, monkeypatch):
  monkeypatch.setenv('SEQLAB_FAKE_POD_ROOT', str(tmp_path / 'pods'))
  return tmp_path


def gcloud(*args) -> int:
  return fake_pod.main(list(args))


@pytest.mark.parametrize('kind, hosts', [('v4-8', 1), ('v4-16', 2), ('v4-32', 4),
                                         ('v5litepod-8', 1), ('v5litepod-16', 4)])
def test_hosts_of_a_slice(kind, hosts):
  assert fake_pod.hosts_of(kind) == hosts


def test_unknown_or_too_big_slice_is_named():
  with pytest.raises(fake_pod.GcloudError, match="'tpu-9'.*e.g. v4-8"):
    fake_pod.hosts_of('tpu-9')
  with pytest.raises(fake_pod.GcloudError, match='v4-256 has 32 hosts.*at most 8'):
    fake_pod.hosts_of('v4-256')


def test_create_describe_scp_ssh(pods, capsys):
  assert gcloud('compute', 'tpus', 'tpu-vm', 'describe', 'p', '--zone=z') == 1
  assert 'NOT_FOUND' in capsys.readouterr().err
  assert gcloud('compute', 'tpus', 'tpu-vm', 'create', 'p', '--zone=z',
                '--accelerator-type=v4-16', '--version=x') == 0
  assert gcloud('compute', 'tpus', 'tpu-vm', 'describe', 'p', '--zone=z',
                '--format=value(state)') == 0
  assert capsys.readouterr().out == 'READY\n'
  homes = [pods / 'pods' / 'p' / f'worker-{i}' for i in range(2)]
  assert os.path.realpath(homes[1] / 'seqlab' / '.venv') == os.path.realpath(sys.prefix)

  (pods / 'code.txt').write_text('code')
  assert gcloud('compute', 'tpus', 'tpu-vm', 'scp', str(pods / 'code.txt'), 'p:~/',
                '--zone=z', '--worker=all') == 0
  assert [(h / 'code.txt').read_text() for h in homes] == ['code', 'code']

  # Each worker: its home as HOME and cwd, its id, and one coordinator for all.
  out = pods / 'out'
  cmd = (f'echo "$PWD $HOME $TPU_WORKER_ID $SLURM_PROCID/$SLURM_NTASKS $SLURM_JOB_ID '
         f'$SLURM_STEP_NODELIST ${{PYTHONPATH:-none}}" > {out}-$TPU_WORKER_ID')
  assert gcloud('compute', 'tpus', 'tpu-vm', 'ssh', 'p', '--zone=z', '--worker=all',
                f'--command={cmd}') == 0
  lines = [(pods / f'out-{i}').read_text().split() for i in range(2)]
  assert [l[:4] for l in lines] == [[str(h), str(h), str(i), f'{i}/2'] for i, h in enumerate(homes)]
  assert lines[0][4:] == lines[1][4:]
  port = json.loads((pods / 'pods' / 'p' / 'pod.json').read_text())['port']
  assert int(lines[0][4]) % 4096 + 61440 == port   # jax's Slurm coordinator port
  assert lines[0][5:] == ['localhost', 'none']      # the worker runs its own copy of the code

  # The exit status is the first failing worker's; a folder comes back with --recurse.
  assert gcloud('compute', 'tpus', 'tpu-vm', 'ssh', 'p', '--zone=z', '--worker=all',
                '--command=mkdir -p d && echo $TPU_WORKER_ID > d/id && exit $((3 + TPU_WORKER_ID))') == 3
  (pods / 'back').mkdir()
  assert gcloud('compute', 'tpus', 'tpu-vm', 'scp', 'p:~/d', str(pods / 'back'), '--zone=z',
                '--worker=0') == 1   # a folder without --recurse
  assert gcloud('compute', 'tpus', 'tpu-vm', 'scp', '--recurse', 'p:~/d', str(pods / 'back'),
                '--zone=z', '--worker=1') == 0
  assert (pods / 'back' / 'd' / 'id').read_text() == '1\n'
  assert gcloud('compute', 'tpus', 'tpu-vm', 'ssh', 'p', '--zone=z', '--worker=2',
                '--command=true') == 1
  assert '--worker=\'2\'' in capsys.readouterr().err


def test_fetching_the_shared_disk_onto_itself_is_a_no_op(pods):
  assert gcloud('compute', 'tpus', 'tpu-vm', 'create', 'p', '--zone=z',
                '--accelerator-type=v4-8') == 0
  (pods / 'work').mkdir()
  (pods / 'work' / 'r').write_text('x')
  assert gcloud('compute', 'tpus', 'tpu-vm', 'scp', '--recurse', f'p:{pods / "work"}',
                str(pods), '--zone=z', '--worker=0') == 0
  assert (pods / 'work' / 'r').read_text() == 'x'


def test_storage_ls_and_what_is_not_simulated(pods, gcs_bucket, capsys):
  from seqlab.infra import storage
  url = f'{gcs_bucket[0]}/fake-pod-ls'
  storage.write_object(f'{url}/results.jsonl', b'{}')
  assert gcloud('storage', 'ls', url) == 0
  assert capsys.readouterr().out == f'{url}/results.jsonl\n'
  assert gcloud('compute', 'tpus', 'tpu-vm', 'list', '--zone=z') == 1
  assert 'not simulated by the fake pod' in capsys.readouterr().err


def launch_cmd(tmp_path) -> list[str]:
  return [sys.executable, 'launch.py', '--config=experiments/long_range.py', '--models=gru',
          '--tasks=adding', '--seq_lens=10', '--seeds=0', f'--config.train.steps={STEPS}',
          f'--config.train.checkpoint_every={EVERY}', '--config.model.hidden=8', '--config.model.param_budget=0', '--lrs=',
          '--config.train.batch_size=4', '--config.train.eval_examples=8', '--tpu=pod',
          '--zone=z', '--accelerator_type=v4-16', '--notpu_install',
          f'--workdir={tmp_path / "work"}', f'--fetch_to={tmp_path / "fetched"}']


def pod_env(tmp_path) -> dict:
  bin_dir = tmp_path / 'bin'
  bin_dir.mkdir(exist_ok=True)
  (bin_dir / 'gcloud').write_text(f'#!/bin/sh\nexec env PYTHONPATH={ROOT} {sys.executable} '
                                  f'-m seqlab.infra.fake_pod "$@"\n')
  (bin_dir / 'gcloud').chmod(0o755)
  return dict(os.environ, PATH=f'{bin_dir}:{os.environ["PATH"]}', XLA_FLAGS='',
              JAX_PLATFORMS='cpu', SEQLAB_FAKE_POD_ROOT=str(tmp_path / 'pods'))


def kill_workers(tmp_path) -> int:
  killed = 0
  for i in range(2):
    pid_file = tmp_path / 'pods' / 'pod' / f'worker-{i}' / 'seqlab' / 'launch.pid'
    try:
      os.kill(int(pid_file.read_text()), signal.SIGKILL)
      killed += 1
    except (FileNotFoundError, ValueError, ProcessLookupError):
      pass
  return killed


def test_pod_run_killed_and_resumed_end_to_end(tmp_path):
  env, cmd = pod_env(tmp_path), launch_cmd(tmp_path)
  (tmp_path / 'fetched').mkdir()
  ckpt = tmp_path / 'work' / POINT / 'checkpoints' / str(EVERY)
  try:
    with open(tmp_path / 'out1', 'w') as out, open(tmp_path / 'err1', 'w') as err:
      p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
      deadline = time.time() + 120
      while not ckpt.is_dir() and p.poll() is None and time.time() < deadline:
        time.sleep(0.05)   # orbax renames the finished checkpoint into place
      assert ckpt.is_dir() and p.poll() is None, (tmp_path / 'out1').read_text()
      assert kill_workers(tmp_path) == 2
      assert p.wait(timeout=60) == 1
    out1, err1 = (tmp_path / 'out1').read_text(), (tmp_path / 'err1').read_text()
    assert '# create it\ngcloud compute tpus tpu-vm create pod' in out1
    assert '# unpack on every worker' in out1 and 'pip install' not in out1
    assert 'process 0 of 2; 1 local / 2 global cpu devices' in out1   # streamed from worker 0
    errors = [l for l in err1.splitlines() if l.startswith('error:')]
    assert len(errors) == 1 and 'exit status 137' in errors[0], err1
    assert 'run the same command to resume' in errors[0]
    assert not (tmp_path / 'work' / POINT / 'result.json').exists()

    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=150)
  finally:
    kill_workers(tmp_path)   # nothing left running if an assertion failed mid-run
  assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
  assert 'tpu-vm create' not in r.stdout   # the pod is reused
  assert 'process 0 of 2' in r.stdout
  assert re.search(r'resuming from checkpoint step (10|20|30)', r.stdout), r.stdout
  rows = writer.read_jsonl(str(tmp_path / 'work' / 'results.jsonl'))
  assert [row['point'] for row in rows] == [POINT]
  steps = [m['step'] for m in writer.read_jsonl(str(tmp_path / 'work' / POINT / 'metrics.jsonl'))
           if 'loss' in m]
  assert steps == list(range(1, STEPS + 1))   # the resumed run ran no step twice
  fetched = tmp_path / 'fetched' / 'work'
  assert (fetched / 'results.jsonl').read_text() == (tmp_path / 'work' / 'results.jsonl').read_text()
  assert (fetched / POINT / 'result.json').exists()
