"""Experiment configs: `experiments/<study>.py[:arg]` files with get_config(arg).

The one loader of config files (launch.py checks a command's config and overrides with
it; the report loads each study's config with it), and the names that moved, so an old
command fails with one line naming the new one.
"""
from __future__ import annotations

import glob
import importlib.util
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENTS = os.path.join(ROOT, 'experiments')

# old config path -> what replaced it
MOVED_CONFIGS = {
    'experiments/scan_speed.py': '--config=experiments/throughput.py:scan',
}
# old config key -> the key that replaced it
MOVED_KEYS = {
    'model.recurrent_impl': 'model.kernel (e.g. --config.model.kernel=fused, or --models=lstm:fused)',
    'model.scan_impl': 'model.kernel (e.g. --config.model.kernel=sequential, or --models=lru:sequential)',
    'model.attention_impl': 'model.kernel (e.g. --config.model.kernel=blocked, or '
                            '--models=transformer:blocked)',
    'train.eval_batches': 'train.eval_examples (held-out examples; a data set\'s held-out '
                          'split is read whole, each example once)',
    'impulse.grad_flow_results': 'nothing: the impulse study reads ../grad_flow/results.jsonl '
                                 'beside its workdir',
}


class ConfigFileError(ValueError):
  """A config file or override that does not exist: one line for the user."""


def available() -> list[str]:
  return sorted(os.path.relpath(p, ROOT)
                for p in glob.glob(os.path.join(EXPERIMENTS, '[!_]*.py')))


def resolve_path(path: str) -> str:
  """A config path: a relative one names the repository's file first (so
  experiments/x.py works from any directory, and a file of that name in the current
  directory does not stand in for the repository's); an absolute path, one starting
  with ./, or one the repository lacks is read as given."""
  for key in (os.path.normpath(path), os.path.relpath(os.path.abspath(path), ROOT)):
    if key in MOVED_CONFIGS:
      raise ConfigFileError(f'{path} was replaced by {MOVED_CONFIGS[key]}')
  own = not os.path.isabs(path) and not path.startswith(('./', '../'))
  if own and os.path.isfile(os.path.join(ROOT, path)):
    path = os.path.join(ROOT, path)
  if not os.path.isfile(path):
    raise ConfigFileError(f'config file {path!r} not found; available: {", ".join(available())}')
  return path


def load(spec: str):
  """'experiments/<study>.py[:arg]' (or '<study>[:arg]') -> its ConfigDict. An unknown
  variant is the config's own one-line ValueError."""
  path, _, arg = spec.partition(':')
  if not path.endswith('.py'):
    path = os.path.join('experiments', f'{path}.py')
  path = resolve_path(path)
  name = os.path.splitext(os.path.basename(path))[0]
  module_spec = importlib.util.spec_from_file_location(f'_seqlab_config_{name}', path)
  module = importlib.util.module_from_spec(module_spec)
  try:
    module_spec.loader.exec_module(module)
  except SyntaxError as e:
    raise ConfigFileError(f'config file {path} has a syntax error at line {e.lineno}: '
                          f'{e.msg}; fix it, or use one of {", ".join(available())}') from None
  except Exception as e:  # the file's own code failed while it was read
    raise ConfigFileError(f'config file {path} failed while loading: {_one_line(e)}') from None
  if not callable(getattr(module, 'get_config', None)):
    raise ConfigFileError(f'config file {path} has no get_config(arg) function; a config is '
                          f'a Python file whose get_config returns an ml_collections.ConfigDict '
                          f'(see experiments/long_range.py)')
  try:
    config = module.get_config(arg) if arg else module.get_config()
  except ValueError as e:   # an unknown :variant: the config's own message, on one line
    raise ConfigFileError(' '.join(str(e).split()) or f'config file {path}: get_config('
                          f'{arg!r}) raised ValueError') from None
  except Exception as e:
    raise ConfigFileError(f'config file {path}: get_config({arg!r}) failed: '
                          f'{_one_line(e)}') from None
  if not hasattr(config, 'to_dict') or not hasattr(config, 'unlocked'):
    raise ConfigFileError(f'config file {path}: get_config({arg!r}) returned '
                          f'{type(config).__name__} {config!r:.40}, not an '
                          f'ml_collections.ConfigDict')
  return config


def _one_line(e: BaseException) -> str:
  """An exception as 'Type: message' on one line (a traceback is not for users)."""
  text = ' '.join(str(e).split())[:300]
  return f'{type(e).__name__}: {text}' if text else type(e).__name__


def check_override(config, key: str, given: str) -> None:
  """Raises ConfigFileError naming the allowed keys when `key` (dotted, e.g.
  'train.lr') is not in config; `given` is the argument as the user wrote it."""
  if key in MOVED_KEYS:
    raise ConfigFileError(f'config.{key} was replaced by {MOVED_KEYS[key]} (in {given!r})')
  node, walked = config, 'config'
  for part in key.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      allowed = ', '.join(sorted(node.keys())) if hasattr(node, 'keys') else '(none: not a group)'
      raise ConfigFileError(f'unknown config key {walked}.{part} in {given!r}; keys of '
                            f'{walked}: {allowed}')
    node, walked = node[part], f'{walked}.{part}'


# One line per config key, for `launch.py --list`; a key a study adds without a line
# here is listed with its default alone.
KEY_DOCS = {
    'study': 'the study this config runs (seqlab/studies)',
    'seed': 'seed of one run; a sweep takes its seeds from --seeds',
    'num_devices': 'devices the batch is split over (0: every device jax sees)',
    'jobs': 'points trained at once, each in its own process (CPU hosts; seqlab/jobs.py)',
    'cpu_devices': "CPU devices made of this host before jax starts (0: jax's default)",
    'model.name': 'model of one run; a sweep takes its models from --models',
    'model.hidden': 'width of the hidden state (or residual stream)',
    'model.layers': 'stacked layers',
    'model.param_budget': '> 0: model.hidden is sized to about this many parameters',
    'model.recurrent_init': 'initialisation of the recurrent matrices',
    'model.spectral_radius': 'spectral radius of the recurrent matrix at init (rnn)',
    'model.forget_bias': 'initial forget-gate bias (lstm)',
    'model.gate_init': "gate biases (lstm, gru): 'constant' or 'chrono' (Tallec & Ollivier 2018)",
    'model.chrono_t_max': "chrono's T_max (0: the sequence length)",
    'model.update_bias': 'initial update-gate bias (gru; +2 keeps the state at init)',
    'model.unroll': 'time steps per scan iteration (speed only)',
    'model.heads': 'attention heads (transformer)',
    'model.mlp_ratio': 'MLP width / hidden (transformer)',
    'model.positions': 'position encoding: sinusoidal or learned (transformer)',
    'model.pool': 'classification readout: cls token or mean over time',
    'model.kernel': 'kernel of every swept model (seqlab.models.KERNELS); auto: the default',
    'model.r_min': 'lru: smallest eigenvalue radius at init',
    'model.r_max': 'lru: largest eigenvalue radius at init',
    'task.name': 'task of one run; a sweep takes its tasks from --tasks',
    'task.seq_len': 'sequence length of one run; a sweep takes them from --seq_lens',
    'task.dataset': "text: 'stdlib' (offline), a Hub id, or '' to read task.path",
    'task.path': 'text: local file or glob (.txt .csv .jsonl .parquet), read when '
                 'task.dataset is empty',
    'task.config_name': 'text: Hub config, e.g. wikitext-2-raw-v1',
    'task.text_column': 'text: column holding the text',
    'task.label_column': 'textclf: column holding the label',
    'task.split': 'text: split to train on',
    'task.eval_split': "text: held-out split ('': every 10th row of task.split)",
    'task.tokenizer': "text: 'byte' (UTF-8) or 'char' (the training alphabet)",
    'task.eval_fraction': 'text: fraction of rows held out when there is no eval split',
    'train.steps': 'optimiser steps per point',
    'train.batch_size': 'examples per step (split over the devices)',
    'train.lr': 'peak learning rate of AdamW',
    'train.warmup_steps': 'linear warm-up steps, then cosine decay',
    'train.weight_decay': 'AdamW weight decay',
    'train.clip_norm': 'global gradient-norm clipping (0: none)',
    'train.final_lr_fraction': 'learning rate at the end / peak',
    'train.log_every': 'steps between progress lines',
    'train.eval_examples': 'held-out examples of a generated task in each evaluation (a data '
                           'set\'s held-out split is read whole)',
    'train.tensorboard': 'also write TensorBoard events to <point>/tb',
    'train.checkpoint_every': 'steps between checkpoints (also at the end, SIGTERM, Ctrl-C)',
    'train.keep_checkpoints': 'checkpoints kept: the last K, plus the best',
    'train.skip_nonfinite': '> 0: skip up to this many non-finite updates in a row',
    'sweep.models': 'models swept (--models), MODEL[:KERNEL]',
    'sweep.tasks': 'tasks swept (--tasks)',
    'sweep.seq_lens': 'sequence lengths swept (--seq_lens)',
    'sweep.seeds': 'seeds swept (--seeds)',
    'sweep.lrs': 'learning rates swept (--lrs); each (model, task, T) reports its best',
    'sweep.skip': 'point-name patterns not run (--skip), e.g. transformer-adding-*',
    'sweep.lr_seeds': 'k > 0: the lr is chosen on the first k seeds, then held for the rest '
                      '(0: every lr at every point)',
    'sweep.lr_at': "with sweep.lr_seeds: the lr chosen at 'each' T or at the 'shortest', held",
    'grad_flow.batch_size': 'examples per seed in each gradient measurement',
    'grad_flow.train_steps': 'training steps before the trained measurement',
    'grad_flow.train_seq_len': 'T of the trained measurement',
    'grad_flow.rhos': 'spectral radii of the rnn sweep',
    'grad_flow.rho_seq_len': 'T of the rnn spectral-radius sweep',
    'impulse.directions': 'random unit impulses averaged',
    'bench.hidden': 'width of every benchmarked model',
    'bench.heads': 'attention heads',
    'bench.batch': 'examples per timed step',
    'bench.steps': 'timed steps per point',
    'bench.warmup': 'untimed steps first',
    'bench.unroll': 'scan unroll',
    'bench.max_step_s': 'a point whose step takes longer is skipped at longer T',
    'scale': 'report: quick or full',
    'redraw_only': 'report: redraw from the results files, run nothing',
    'sections': 'report: the studies to include ([]: all)',
}


def flat_keys(config, prefix: str = '') -> list[tuple[str, object]]:
  """(dotted key, default value) of every leaf of config, in order."""
  out = []
  for k, v in config.items():
    if hasattr(v, 'keys'):
      out += flat_keys(v, f'{prefix}{k}.')
    else:
      out.append((f'{prefix}{k}', v))
  return out
