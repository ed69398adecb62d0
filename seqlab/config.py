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
    'impulse.grad_flow_results': 'nothing: the impulse study reads ../grad_flow/results.jsonl '
                                 'beside its workdir',
}


class ConfigFileError(ValueError):
  """A config file or override that does not exist: one line for the user."""


def available() -> list[str]:
  return sorted(os.path.relpath(p, ROOT)
                for p in glob.glob(os.path.join(EXPERIMENTS, '[!_]*.py')))


def resolve_path(path: str) -> str:
  """A config path as given, or relative to the repository root (so experiments/x.py
  works from any directory)."""
  for key in (os.path.normpath(path), os.path.relpath(os.path.abspath(path), ROOT)):
    if key in MOVED_CONFIGS:
      raise ConfigFileError(f'{path} was replaced by {MOVED_CONFIGS[key]}')
  if not os.path.isfile(path) and os.path.isfile(os.path.join(ROOT, path)):
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
  module_spec.loader.exec_module(module)
  return module.get_config(arg) if arg else module.get_config()


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
