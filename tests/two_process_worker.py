"""One process of the 2-process tests in test_distributed.py: runs launch.py (the real
launcher, flags and all) in this process, optionally killing itself with SIGKILL once
the train state reaches step KILL_AT_STEP (a deterministic kill -9 mid-run).

  PYTHONPATH=. python tests/two_process_worker.py KILL_AT_STEP launch.py-flags...   (0: no kill)
"""
import os
import runpy
import signal
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

kill_at = int(sys.argv[1])
if kill_at:
  from seqlab import train

  compile_steps = train.compile_steps

  def compile_steps_that_die(*args, **kwargs):
    compiled = compile_steps(*args, **kwargs)
    step_fn = compiled.train_step

    def train_step(state, batch):
      if int(state['step'].addressable_data(0)) == kill_at:  # state before this step
        print(f'process {os.environ.get("SEQLAB_PROCESS")}: kill -9 at step {kill_at}',
              flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
      return step_fn(state, batch)

    compiled.train_step = train_step
    return compiled

  train.compile_steps = compile_steps_that_die

sys.argv = [os.path.join(ROOT, 'launch.py')] + sys.argv[2:]
runpy.run_path(sys.argv[0], run_name='__main__')
