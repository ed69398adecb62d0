"""seqlab launcher: the only file that defines flags.

  python launch.py                                   # the default study (gradient flow)
  python launch.py --config=experiments/long_range.py --models=rnn,lstm \
      --tasks=adding --seq_lens=50,200 --seeds=0,1 --config.train.steps=1000
  python launch.py --list [--config=...]             # studies, models, tasks, config keys
  python launch.py --config=... --print_config       # the resolved config; runs nothing
  python launch.py --config=... --rerun=lstm-*       # run chosen finished points again
  python launch.py --evaluate=runs/long_range/lstm-adding-T50-lr0.01-s0 [--checkpoint=latest]
  python launch.py --sample=runs/text/lstm-charlm-T128-s0 --prompt='def ' --temperature=0.8

Sweep axes given as flags override the config's own lists; every other setting is a
dotted override of the config (`--config.model.hidden=128`). Ctrl-C saves a checkpoint
at the next step and stops (exit 130; SIGTERM: 143); the same command resumes. Exit
statuses, bad inputs and faults: docs/faults.md.
"""
import logging
import os
import re
import sys

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

from seqlab import config as seqlab_config

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CONFIG = 'experiments/grad_flow.py'
# A config key a sweep replaces by one of its axes -> that axis's flag.
SWEPT = {'model.name': 'models', 'task.name': 'tasks', 'task.seq_len': 'seq_lens',
         'seed': 'seeds', 'train.lr': 'lrs'}
TYPE_WORDS = {bool: 'true or false', int: 'an integer', float: 'a number', str: 'a string'}


def fail(msg: str, status: int = 2):
  print(f'error: {msg}', file=sys.stderr, flush=True)
  sys.exit(status)


def _parse_as(kind, text: str):
  if kind is bool:
    if text.lower() not in ('true', 'false', '1', '0'):
      raise ValueError(text)
    return text.lower() in ('true', '1')
  return kind(text)


def check_config_args(argv) -> None:
  """Loads the --config file and checks every --config.a.b=v override: the key exists,
  the value parses as the key's type, and the run would use it (a sweep axis replaces
  its config key). Before ml_collections, which would raise a multi-line trace."""
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
      if not a.startswith('--config.'):
        continue
      key, has_value, text = a[len('--config.'):].partition('=')
      seqlab_config.check_override(config, key, a)
      default = _lookup(config, key)
      kind = type(default)
      if has_value and kind in TYPE_WORDS and kind is not str:
        try:
          _parse_as(kind, text)   # its range is checked with the study's checks, below
        except ValueError:
          raise ValueError(f'{a}: config.{key} takes {TYPE_WORDS[kind]} (its default is '
                           f'{default!r}), not {text!r}') from None
      sweep = config.get('sweep')
      axis = SWEPT.get(key)
      values = _flag_list(argv, axis) if axis else None
      if axis and sweep is not None and (sweep.get(axis) if values is None else values):
        raise ValueError(f'{a} would be ignored: this study runs every value of sweep.{axis} '
                         f'({",".join(map(str, values or sweep[axis]))}); use --{axis}={text} '
                         f'instead')
      budget = _flag_value(argv, 'config.model.param_budget')
      if key == 'model.hidden' and _positive(budget or config.get('model', {}).get(
          'param_budget', 0)):
        raise ValueError(f'{a} would be ignored: model.param_budget='
                         f'{budget or config.model.param_budget} sizes every model\'s width; '
                         f'add --config.model.param_budget=0 to set the width yourself')
  except ValueError as e:  # a missing file, an unknown :variant or key, a bad value
    fail(str(e))


def _positive(text) -> bool:
  try:
    return float(text) > 0
  except ValueError:
    return False   # not a number: its own override check says so


def _flag_value(argv, name):
  """The value of --name=V in argv (the last one), or None."""
  hits = [a.split('=', 1)[1] for a in argv[1:] if a.startswith(f'--{name}=')]
  return hits[-1] if hits else None


def _flag_list(argv, name):
  """The values of a list flag --name=a,b in argv ([] for --name=), or None when absent."""
  v = _flag_value(argv, name)
  return None if v is None else [x for x in v.split(',') if x]


def _lookup(config, key):
  for part in key.split('.'):
    config = config[part]
  return config


if __name__ == '__main__':
  # stderr carries only the one error line: jax's platform probing ("Unable to
  # initialize backend 'tpu'") logs at INFO through absl's handler, so keep INFO off.
  logging.getLogger('jax').setLevel(logging.WARNING)
  # gcsfs logs each failed retry with its traceback; the error that follows is one line.
  logging.getLogger('gcsfs').setLevel(logging.CRITICAL)
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')   # XLA's C++ start-up lines
  USER_ARGV = list(sys.argv)   # as typed: the TPU workers get these, not local paths
  check_config_args(sys.argv)

config_flags.DEFINE_config_file(
    'config', os.path.join(HERE, DEFAULT_CONFIG),
    'Study config: experiments/<study>.py[:arg] (--list shows every study, model, task and '
    'key). Dotted overrides such as --config.train.steps=100 change single values.',
    lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory (default: runs/<config name>), a local '
                    'path or gs://bucket/path. The same command on the same workdir skips '
                    'finished points and resumes an interrupted one.')
flags.DEFINE_list('models', None, 'Models to sweep, e.g. rnn,lstm,gru,transformer; '
                  'MODEL:KERNEL picks a kernel, e.g. lstm:fused.')
flags.DEFINE_list('tasks', None, 'Tasks to sweep, e.g. adding,copy,recall,kback.')
flags.DEFINE_list('seq_lens', None, 'Sequence lengths to sweep, e.g. 50,200,1000.')
flags.DEFINE_list('seeds', None, 'Seeds to sweep, e.g. 0,1,2.')
flags.DEFINE_list('lrs', None, 'Learning rates to sweep, e.g. 1e-3,3e-3; tables and claims '
                  'use, for each (model, task, T), the lr with the best validation loss.')
flags.DEFINE_list('skip', None, 'Points of the sweep not to run: point-name patterns, e.g. '
                  'transformer-adding-* (the sweep.skip list).')
flags.DEFINE_list('sections', None, 'With experiments/report.py: the studies to run and draw, '
                  'in order, e.g. grad_flow,long_range (config.sections; default: the scale\'s).')
flags.DEFINE_bool('override', False, 'Run even though --workdir holds a config.json that '
                  'differs from this command (finished points are kept).')
flags.DEFINE_list('rerun', None, 'Finished points to run again from the start, keeping every '
                  'other: point names, shell patterns (lstm-*) or "diverged".')
flags.DEFINE_enum('target', None, ['tpu', 'cuda'], 'With --only_check_args: also export '
                  'each long point\'s train, evaluation and decode steps for this platform '
                  '(jax.export, over a v5e-8 and a v4-32 mesh) and name any that fails, then '
                  'print its train step\'s roofline bound on the platform\'s chips and refuse '
                  'a point none of them holds.')
flags.DEFINE_bool('list', False, 'Print the studies, models (with kernels), tasks and the '
                  'chosen config\'s keys with defaults and meanings, then exit.')
flags.DEFINE_bool('print_config', False, 'Print the resolved config (after flags) and exit.')
flags.DEFINE_string('evaluate', None, 'A point folder (e.g. runs/long_range/lstm-adding-T50-lr0.01-s0):'
                    ' print its checkpoint\'s held-out metrics and exit; writes nothing.')
flags.DEFINE_enum('checkpoint', 'best', ['best', 'latest'], 'With --evaluate or --sample: '
                  'the best (lowest held-out loss) or the latest checkpoint.')
flags.DEFINE_string('sample', None, 'A finished charlm point folder: print text it generates '
                    'after --prompt and exit; writes nothing.')
flags.DEFINE_string('prompt', 'def ', 'With --sample: the text to continue.')
flags.DEFINE_float('temperature', 0.8, 'With --sample: softmax temperature (0: greedy).')
flags.DEFINE_integer('sample_len', 200, 'With --sample: tokens (bytes) to generate.')
flags.DEFINE_integer('sample_seed', 0, 'With --sample: the seed; the same seed gives the same text.')
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
flags.DEFINE_bool('tpu_install', True, 'With --tpu: make a venv and install the packages on '
                  'every worker; --notpu_install skips it (an image that has them, or the '
                  'simulated pod of seqlab/infra/fake_pod.py).')
flags.DEFINE_list('ship_extra', None, 'With --tpu: untracked files or folders of this checkout '
                  'to ship too (only the git-tracked files are shipped otherwise; a file named '
                  'like a secret, such as service-account.json or *.pem, never is).')
FLAGS = flags.FLAGS
CHECK_ONLY = False   # --only_check_args: every check a real run makes, then exit 0
HELP_FLAGS = ('--help', '-help', '-h', '-?', '--helpshort', '--helpfull', '--helpxml')


def parse_flags(argv):
  global CHECK_ONLY
  try:
    rest = FLAGS(argv)
  except (flags.Error, KeyError, AttributeError, ValueError, TypeError) as e:
    fail(str(e).strip().splitlines()[-1] if str(e).strip() else repr(e))
  except SystemExit as e:   # absl exits 1 once it has printed the help a user asked for
    if any(a.split('=')[0] in HELP_FLAGS for a in argv[1:]):
      sys.exit(0)
    raise
  # absl exits at --only_check_args before main: run main's checks instead.
  CHECK_ONLY, FLAGS.only_check_args = FLAGS.only_check_args, False
  if FLAGS['verbosity'].using_default_value:
    FLAGS.verbosity = absl_logging.WARNING   # absl would set INFO; keep stderr for errors
  return rest


def config_name() -> str:
  path = config_flags.get_config_filename(FLAGS['config'])
  return os.path.splitext(os.path.basename(path))[0]


def build_config():
  config = FLAGS.config
  with config.unlocked():
    for axis, conv in (('models', str), ('tasks', str), ('seq_lens', int), ('seeds', int),
                       ('lrs', float), ('skip', str)):
      values = getattr(FLAGS, axis)
      if values is not None:
        if conv is not str:
          try:
            values = [conv(v) for v in values]
          except ValueError:
            fail(f'--{axis}={",".join(values)}: every value must be '
                 f'{"an integer" if conv is int else "a number"}')
        if 'sweep' not in config or axis not in config.sweep:
          fail(f'--{axis}: config.study={config.get("study")!r} has no sweep.{axis} to set')
        config.sweep[axis] = values
    if FLAGS.sections is not None:   # a list key: --config.sections cannot set it
      if 'sections' not in config:
        fail(f'--sections: config.study={config.get("study")!r} has no sections; it is a '
             f'key of experiments/report.py')
      config.sections = [s for s in FLAGS.sections if s]
  return config


def list_everything(config) -> str:
  """--list: studies, models with kernels, tasks, and the config's keys."""
  from seqlab import models, report, studies
  from seqlab.data import tasks
  lines = ['studies (--config=experiments/<study>.py[:quick|full]):']
  for s in (*studies.STUDIES.values(), report):
    lines.append(f'  {s.NAME:<16} {getattr(s, "TITLE", "the full report: every study")}')
  lines.append('models (--models=MODEL[:KERNEL]; auto: the first on a CPU, see docs/scaling.md):')
  for m in models.MODELS:
    lines.append(f'  {m:<16} kernels: {", ".join(models.KERNELS.get(m, ())) or "-"}')
  lines.append(f'tasks (--tasks): {", ".join(tasks.task_names())}')
  lines.append(f'config keys of {config_name()} (--config.KEY=VALUE; default, meaning):')
  keys = seqlab_config.flat_keys(config)
  width = max(len(k) for k, _ in keys)
  for k, v in keys:
    doc = seqlab_config.KEY_DOCS.get(k, '')
    lines.append(f'  {k:<{width}}  {v!r:<22} {doc}'.rstrip())
  return '\n'.join(lines)


def jax_process_index() -> int:
  import jax
  return jax.process_index()


def evaluate_point() -> None:
  from seqlab import evaluate
  try:
    m = evaluate.evaluate(FLAGS.evaluate, FLAGS.checkpoint)
  except (evaluate.LoadError, OSError) as e:
    fail(str(e))
  extra = ''.join(f', {k} {m[k]:.4f}' for k in sorted(m)
                  if k not in ('step', 'checkpoint', 'examples', 'loss', 'loss_se',
                               'chance_loss') and isinstance(m[k], float))
  print(f'{FLAGS.evaluate}: {m["checkpoint"]} checkpoint (step {m["step"]}, best chosen on '
        f'VALID): EVAL loss {m.get("loss", float("nan")):.4f} +- {m.get("loss_se", 0):.2g} '
        f'(chance {m["chance_loss"]:.4f}){extra} over {m["examples"]} held-out examples')


def sample_point() -> None:
  from seqlab import evaluate, sampling
  if FLAGS.temperature < 0 or FLAGS.sample_len < 1:
    fail(f'--temperature={FLAGS.temperature} and --sample_len={FLAGS.sample_len}: the '
         f'temperature must be >= 0 and the length >= 1')
  try:
    text = sampling.sample_text(FLAGS.sample, FLAGS.prompt, FLAGS.sample_len, FLAGS.temperature,
                                FLAGS.sample_seed, FLAGS.checkpoint)
  except (evaluate.LoadError, OSError) as e:
    fail(str(e))
  print(FLAGS.prompt + text)


def check_export(config, target: str) -> None:
  """--target: the longest point of each (model, task) exported for `target`, and its
  train step's roofline bound on the target's chips (seqlab/measure/roofline.py)."""
  from seqlab import sweep
  from seqlab.measure import export, memory
  if not all(k in config for k in ('sweep', 'train', 'task', 'model')):
    fail(f'--target={target}: config.study={config.get("study")!r} trains no sweep of points '
         f'to export; give a study such as experiments/long_range.py')
  longest = memory.longest_points(config)
  points = [sweep.point_config(config, p) for p in longest]
  results = export.check(points, targets=(target,))
  for r in results:
    print(r.line(), flush=True)
  bad = export.failures(results)
  if bad:
    fail(f'{len(bad)} of {len(results)} programs do not lower for {target} (the FAILED lines '
         f'above)', status=1)
  from seqlab.measure import roofline
  too_big = roofline.check(points, target, say=lambda line: print(line, flush=True),
                           names=[p['model'] for p in longest])
  if too_big:
    fail(f'cannot fit: {too_big[0]}')


def main(argv):
  if len(argv) > 1:
    fail(f'unexpected arguments {argv[1:]}; flags take the form --name=value')
  from seqlab import sweep, sweep_checks
  from seqlab import workdir as workdir_lib
  from seqlab.infra import distributed, storage, writer
  config = build_config()
  if FLAGS.list:
    print(list_everything(config))
    return
  if FLAGS.print_config:
    print(config)
    return
  if FLAGS.evaluate:
    evaluate_point()
    return
  if FLAGS.sample:
    sample_point()
    return
  workdir = FLAGS.workdir or os.path.join('runs', config_name())
  try:
    storage.check(workdir)
    sweep.check_ranges(config)
  except (storage.SchemeError, sweep.ConfigError) as e:
    fail(str(e))
  if FLAGS.tpu and not FLAGS.zone:  # before jax starts: nothing else on stderr
    fail(f'--tpu={FLAGS.tpu} needs --zone (e.g. --zone=us-central2-b)')
  if FLAGS.ship_extra and not FLAGS.tpu:
    fail(f'--ship_extra={",".join(FLAGS.ship_extra)} is for --tpu launches (what is copied '
         f'to the workers); give --tpu=NAME, or drop it')
  flagfile = next((a for a in USER_ARGV[1:] if re.match(r'--?flagfile(=|$)', a)), None)
  if FLAGS.tpu and flagfile:   # its flags would reach the workers unread, the file not at all
    fail(f'{flagfile} cannot be used with --tpu: the workers get the flags as typed; give '
         f'them on the command line')
  cpu_devices = config.get('cpu_devices', 0)
  if cpu_devices:   # before anything starts jax's backends (connect, validate)
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
  if FLAGS.skip is None and _flag_value(sys.argv, 'config.sweep.skip') is None:
    # the config file's own skip patterns must not refuse a sweep narrowed by --models
    dropped = sweep_checks.drop_default_skips(config)
    if dropped:
      print(f'note: sweep.skip {", ".join(map(repr, dropped))} (the defaults of '
            f'{config_name()}) match no point of this sweep; dropped', flush=True)
  try:
    study.validate(config)
    if hasattr(study, 'validate_workdir'):  # the report: is there anything to redraw
      study.validate_workdir(config, workdir)
    rerun = (workdir_lib.select_rerun(workdir, FLAGS.rerun,
                                      workdir_lib.own_point_names(study, config))
             if FLAGS.rerun else [])
    workdir_lib.check_workdir(workdir)
    if FLAGS.target and not CHECK_ONLY:
      raise sweep.ConfigError(f'--target={FLAGS.target} is a check: give it with '
                              f'--only_check_args (it exports programs, it runs none)')
    # a TPU run is checked on its workers, against their memory; --target against the
    # target's chips (check_export), not this host's
    if not FLAGS.tpu and not FLAGS.target:
      from seqlab.measure import memory   # after connect: it compiles
      memory.check(config, every=CHECK_ONLY, say=print if CHECK_ONLY else None)
  except sweep.ConfigError as e:
    fail(str(e))
  if FLAGS.rerun and not rerun:   # --rerun=diverged, and no point diverged
    print(f'--rerun={",".join(FLAGS.rerun)}: no finished point of {workdir} diverged; nothing '
          f'to rerun', flush=True)
    return
  if CHECK_ONLY and FLAGS.target:
    check_export(config, FLAGS.target)
  if CHECK_ONLY:
    print(f'ok: {config_name()} would run into {workdir}; every check passed')
    return
  if FLAGS.tpu:  # checked here, run there: the same command on every TPU worker
    from seqlab.infra import tpu_launch
    spec = tpu_launch.TpuSpec(FLAGS.tpu, FLAGS.zone, FLAGS.project, FLAGS.accelerator_type,
                              FLAGS.runtime_version, FLAGS.queued_resource, FLAGS.dry_run,
                              FLAGS.fetch_to, install=FLAGS.tpu_install,
                              extra=tuple(FLAGS.ship_extra or ()))
    sys.exit(tpu_launch.main(spec, USER_ARGV[1:], workdir, HERE))
  try:
    workdir_lib.open_workdir(config, workdir, override=FLAGS.override)
  except sweep.ConfigError as e:
    fail(str(e))
  try:
    workdir_lib.forget(workdir, rerun)
    study.run(config, workdir)
  except writer.WriteError as e:
    fail(str(e), status=1)
  except sweep.ConfigError as e:  # a study's own checks, made before it measures anything
    fail(str(e))
  except KeyboardInterrupt:  # a Ctrl-C outside the training loop, or a second one inside
    fail(f'interrupted; finished points and saved checkpoints in {workdir} are kept: run the '
         f'same command to resume', status=130)


if __name__ == '__main__':
  try:
    app.run(main, flags_parser=parse_flags)
  except KeyboardInterrupt:  # Ctrl-C while starting (imports, flags): nothing to keep
    fail('interrupted before the run started; nothing was written', status=130)
