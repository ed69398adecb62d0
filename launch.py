"""seqlab launcher: the only file that defines flags.

  python launch.py                                   # the default study (gradient flow)
  python launch.py --config=experiments/long_range.py --models=rnn,lstm \
      --tasks=adding --seq_lens=50,200 --seeds=0,1 --config.train.steps=1000

Sweep axes given as flags override the config's own lists; every other setting is a
dotted override of the config (`--config.model.hidden=128`).
"""
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from seqlab import config as seqlab_config

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = 'experiments/grad_flow.py'


def fail(msg: str, status: int = 2):
  print(f'error: {msg}', file=sys.stderr)
  sys.exit(status)


def check_config_args(argv) -> None:
  """Loads the --config file and checks every --config.a.b=v override names a key
  that exists, before ml_collections (which would raise a multi-line trace) sees it."""
  spec, at = DEFAULT_CONFIG, None
  for i, a in enumerate(argv[1:], 1):
    if a.startswith('--config='):
      spec, at = a.split('=', 1)[1], i
  path, _, arg = spec.partition(':')
  try:
    path = seqlab_config.resolve_path(path)
    if at is not None:   # experiments/... works from any directory
      argv[at] = f'--config={path}' + (f':{arg}' if arg else '')
    config = seqlab_config.load(f'{path}:{arg}' if arg else path)
    for a in argv[1:]:
      if a.startswith('--config.'):
        seqlab_config.check_override(config, a[len('--config.'):].split('=', 1)[0], a)
  except ValueError as e:  # a missing file, an unknown :variant or key: one line
    fail(str(e))


if __name__ == '__main__':
  check_config_args(sys.argv)

config_flags.DEFINE_config_file(
    'config', os.path.join(HERE, DEFAULT_CONFIG),
    'Study config: experiments/<study>.py[:arg]. Dotted overrides such as '
    '--config.train.steps=100 change single values.', lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config name>), a local '
                    'path or gs://bucket/path. The same command on the same workdir skips '
                    'finished points.')
flags.DEFINE_list('models', None, 'Models to sweep, e.g. rnn,lstm,gru,transformer; '
                  'MODEL:KERNEL picks a kernel, e.g. lstm:fused.')
flags.DEFINE_list('tasks', None, 'Tasks to sweep, e.g. adding,copy,recall,kback.')
flags.DEFINE_list('seq_lens', None, 'Sequence lengths to sweep, e.g. 50,200,1000.')
flags.DEFINE_list('seeds', None, 'Seeds to sweep, e.g. 0,1,2.')
flags.DEFINE_bool('override', False, 'Run even though --workdir holds a config.json that '
                  'differs from this command (finished points are kept).')
# Multi-host (seqlab/infra/distributed.py): automatic on a TPU VM pod, explicit elsewhere.
flags.DEFINE_bool('distributed', False, 'Call jax.distributed.initialize() with the cluster '
                  'auto-detected (TPU VM pods; --tpu passes it to every worker).')
flags.DEFINE_string('coordinator_address', None, 'HOST:PORT of process 0, for a multi-host '
                    'run outside a TPU pod (with --num_processes and --process_id).')
flags.DEFINE_integer('num_processes', None, 'Processes (hosts) in a multi-host run.')
flags.DEFINE_integer('process_id', None, 'This process: 0 .. num_processes-1.')
flags.DEFINE_integer('distributed_timeout', 300, 'Seconds to wait for every process to '
                     'join before failing with one line (exit 1).')
# Launching on Cloud TPU VMs (seqlab/infra/tpu_launch.py): the same command on every worker.
flags.DEFINE_string('tpu', None, 'Run this command on the TPU VM (or pod slice) NAME.')
flags.DEFINE_string('zone', None, 'Zone of --tpu, e.g. us-central2-b.')
flags.DEFINE_string('project', None, 'gcloud project of --tpu (default: gcloud\'s).')
flags.DEFINE_string('accelerator_type', 'v4-8', 'TPU type to create when --tpu does not exist.')
flags.DEFINE_string('runtime_version', 'tpu-ubuntu2204-base', 'TPU VM software version.')
flags.DEFINE_bool('queued_resource', False, 'Create --tpu through a queued resource.')
flags.DEFINE_bool('dry_run', False, 'With --tpu: print the gcloud commands, run none.')
flags.DEFINE_string('fetch_to', '.', 'With --tpu: local folder the workdir is copied into.')
FLAGS = flags.FLAGS


def parse_flags(argv):
  try:
    return FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    fail(str(e).strip().splitlines()[-1] if str(e).strip() else repr(e))


def config_name() -> str:
  path = config_flags.get_config_filename(FLAGS['config'])
  return os.path.splitext(os.path.basename(path))[0]


def build_config():
  config = FLAGS.config
  with config.unlocked():
    for axis, conv in (('models', str), ('tasks', str), ('seq_lens', None), ('seeds', None)):
      values = getattr(FLAGS, axis)
      if values is not None:
        if conv is None:
          try:
            values = [int(v) for v in values]
          except ValueError:
            fail(f'--{axis}={",".join(values)}: every value must be an integer')
        config.sweep[axis] = values
  return config


def jax_process_index() -> int:
  import jax
  return jax.process_index()


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  from seqlab import sweep
  from seqlab.infra import distributed, storage, writer
  config = build_config()
  workdir = FLAGS.workdir or os.path.join('runs', config_name())
  try:
    storage.check(workdir)
  except storage.SchemeError as e:
    fail(str(e))
  cpu_devices = config.get('cpu_devices', 0)
  if cpu_devices:   # before anything starts jax's backends (connect, validate)
    if cpu_devices < 0:
      fail(f'config.cpu_devices={cpu_devices} must be >= 0 (0: jax\'s default of one)')
    import jax
    jax.config.update('jax_num_cpu_devices', cpu_devices)
  cluster = distributed.ClusterSpec(FLAGS.coordinator_address, FLAGS.num_processes,
                                    FLAGS.process_id, FLAGS.distributed_timeout,
                                    auto=FLAGS.distributed)
  try:
    distributed.validate(cluster)
  except ValueError as e:
    fail(str(e))
  # Before anything asks jax for devices (sweep.validate does): every host runs this.
  if not FLAGS.tpu and distributed.connect(cluster) and jax_process_index() == 0:
    print(distributed.describe(), flush=True)
  from seqlab import report, studies   # after connect: nothing may start jax's backends first
  runnable = {**studies.STUDIES, 'report': report}   # config.study -> its module
  name = config.get('study', '')
  if name not in runnable:
    fail(f'config.study={name!r} is not a study; allowed: {", ".join(runnable)}')
  study = runnable[name]
  try:
    study.validate(config)
  except sweep.ConfigError as e:
    fail(str(e))
  if FLAGS.tpu:  # checked here, run there: the same command on every TPU worker
    from seqlab.infra import tpu_launch
    if not FLAGS.zone:
      fail(f'--tpu={FLAGS.tpu} needs --zone (e.g. --zone=us-central2-b)')
    spec = tpu_launch.TpuSpec(FLAGS.tpu, FLAGS.zone, FLAGS.project, FLAGS.accelerator_type,
                              FLAGS.runtime_version, FLAGS.queued_resource, FLAGS.dry_run,
                              FLAGS.fetch_to)
    sys.exit(tpu_launch.main(spec, sys.argv[1:], workdir, HERE))
  try:
    sweep.open_workdir(config, workdir, override=FLAGS.override)
  except sweep.ConfigError as e:
    fail(str(e))
  try:
    study.run(config, workdir)
  except writer.WriteError as e:
    fail(str(e), status=1)
  except sweep.ConfigError as e:  # a study's own checks, made before it measures anything
    fail(str(e))


if __name__ == '__main__':
  app.run(main, flags_parser=parse_flags)
