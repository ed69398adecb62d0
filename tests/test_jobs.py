"""seqlab.jobs: points trained two at a time give the results of one at a time, bitwise,
and a SIGTERM stops every worker with its checkpoint saved, the rerun finishing them."""
import glob
import os
import signal
import subprocess
import sys
import time

from experiments import long_range
from seqlab import sweep
from seqlab.infra import writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMING = ('wall_s', 'tokens_per_s', 'compile_s')


def tiny(jobs: int, steps: int = 20):
  c = long_range.get_config()
  c.jobs = jobs
  c.model.param_budget, c.model.hidden = 0, 8
  c.sweep.update(models=['rnn', 'gru'], seq_lens=[8], seeds=[0, 1], lrs=[])
  c.train.update(steps=steps, log_every=10, eval_examples=8, checkpoint_every=0)
  return c


def results(workdir):
  rows = writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
  return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


def losses(workdir):
  return {os.path.basename(os.path.dirname(p)): [r.get('loss') for r in writer.read_jsonl(p)]
          for p in glob.glob(os.path.join(workdir, '*', 'metrics.jsonl'))}


def test_two_jobs_give_the_results_of_one_bitwise(tmp_path):
  one, two = str(tmp_path / 'one'), str(tmp_path / 'two')
  sweep.run(tiny(1), one)
  sweep.run(tiny(2), two)
  assert results(two) == results(one)            # same rows, in point order
  assert losses(two) == losses(one) and len(losses(one)) == 4
  log = open(os.path.join(two, 'gru-adding-T8-s1', 'log.txt')).read()
  assert 'held-out loss' in log                  # each worker's own lines, per point
  assert not os.path.exists(os.path.join(one, 'gru-adding-T8-s1', 'log.txt'))


def test_sigterm_stops_the_workers_and_the_rerun_finishes(tmp_path):
  flags = ['--models=rnn,gru', '--seq_lens=8', '--seeds=0,1', '--lrs=',
           '--config.model.param_budget=0', '--config.model.hidden=8',
           '--config.train.steps=300', '--config.train.log_every=10',
           '--config.train.eval_examples=8', '--config.train.checkpoint_every=0',
           '--config.jobs=2', f'--workdir={tmp_path / "run"}']
  cmd = [sys.executable, 'launch.py', '--config=experiments/long_range.py', *flags]
  env = dict(os.environ, PYTHONPATH=ROOT)
  proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
  deadline = time.time() + 120
  while not glob.glob(str(tmp_path / 'run' / '*' / 'metrics.jsonl')):  # a worker trains
    assert proc.poll() is None and time.time() < deadline
    time.sleep(0.2)
  proc.send_signal(signal.SIGTERM)
  out, err = proc.communicate(timeout=180)
  assert proc.returncode == 143, err                        # a preemption, as with jobs=1
  assert 'SIGTERM: the running points save a checkpoint and stop' in err
  saved = glob.glob(str(tmp_path / 'run' / '*' / 'checkpoints' / '*'))
  assert saved                                              # the running points saved
  done = writer.read_jsonl(str(tmp_path / 'run' / 'results.jsonl')) \
      if os.path.exists(tmp_path / 'run' / 'results.jsonl') else []
  assert len(done) < 4                                      # it stopped before the end
  again = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
  assert again.returncode == 0, again.stderr
  sweep.run(tiny(1, steps=300), str(tmp_path / 'one'))
  assert results(str(tmp_path / 'run')) == results(str(tmp_path / 'one'))


def _note_start(path, name):   # a worker's fn: module level, so it pickles
  with open(path, 'a') as f:
    f.write(f'{name} {os.getpid()}\n')
  return {'name': name}


def test_a_group_holds_every_lr_and_seed_and_the_longest_starts_first(tmp_path):
  from seqlab import jobs
  a = dict(model='rnn', task='adding', seq_len=8)
  assert jobs._group(dict(a, lr=0.01, seed=0)) == jobs._group(dict(a, lr=0.003, seed=1))
  assert jobs._group(dict(a, seed=0)) != jobs._group(dict(a, seq_len=16, seed=0))
  log = str(tmp_path / 'starts')
  points = [dict(model=m, task='adding', seq_len=t, lr=lr, seed=s)
            for m, t in (('rnn', 8), ('gru', 8), ('rnn', 64), ('transformer', 32))
            for lr in (0.003, 0.01) for s in (0, 1)]
  todo = [(p, (log, sweep.point_name(p)), None) for p in points]
  got = []
  jobs.run(2, _note_start, todo, lambda p, r: got.append(r['name']))
  assert got == [sweep.point_name(p) for p in points]     # handed back in point order
  order = jobs.schedule(points)   # 4 groups of 4 (lr x seed): the longest start first
  assert [points[g[0]]['model'] + str(points[g[0]]['seq_len']) for g in order] == [
      'transformer32', 'rnn64', 'rnn8', 'gru8']          # 4 x 32 x 4, 4 x 64, then in order
  assert sorted(i for g in order for i in g) == list(range(16))
  starts = [line.split() for line in open(log)]
  for group in ('rnn-adding-T8', 'gru-adding-T8', 'rnn-adding-T64', 'transformer-adding-T32'):
    mine = [(name, pid) for name, pid in starts if name.startswith(group + '-')]
    assert len(mine) == 4 and len({pid for _, pid in mine}) == 1   # one worker, in turn
    assert [n for n, _ in mine] == [sweep.point_name(p) for p in points
                                    if sweep.point_name(p).startswith(group + '-')]
