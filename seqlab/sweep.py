"""Sweeps: validate a config, run each point in its own subdirectory, keep
results.jsonl (one line per finished point) and print a summary table.

STUDIES maps `config.study` to the function that runs it: run(config, workdir).
"""
from __future__ import annotations

import copy
import importlib
import itertools
import math
import os

import jax

from seqlab import models, tasks, writer


class ConfigError(ValueError):
  """Bad user input: launch.py prints it as one line and exits with status 2."""


STUDIES = {
    'train': 'seqlab.sweep:run',
    'report': 'seqlab.report:run',
}


def study_fn(name: str):
  if name not in STUDIES:
    raise ConfigError(f'unknown study {name!r}; allowed: {", ".join(sorted(STUDIES))}')
  module, fn = STUDIES[name].split(':')
  return getattr(importlib.import_module(module), fn)


# --------------------------------------------------------------------------- validation
def _allowed(kind: str, value, table) -> None:
  if value not in table:
    raise ConfigError(f'unknown {kind} {value!r}; allowed: {", ".join(table)}')


def validate(config) -> None:
  """Checks every sweep axis and the sizes before anything compiles."""
  sw = config.get('sweep')
  if sw is None:  # studies without sweep axes (the report) validate their own parts
    return
  if not sw.models or not sw.tasks or not sw.seq_lens or not sw.seeds:
    raise ConfigError('the sweep is empty: --models, --tasks, --seq_lens and --seeds each '
                      'need at least one value')
  for m in sw.models:
    _allowed('model', m, models.MODELS)
  for t in sw.tasks:
    _allowed('task', t, tasks.task_names())
  for t in sw.tasks:
    tc = copy.deepcopy(config.task)
    with tc.unlocked():
      tc.name = t
    try:
      task = tasks.build(tc)
    except (ValueError, OSError) as e:  # builders raise one-line messages for bad data
      raise ConfigError(str(e)) from None
    for n in sw.seq_lens:
      n_int = _as_int('seq_len', n)
      if n_int < task.min_seq_len:
        raise ConfigError(f'seq_len={n} is too short for task {t!r}: it needs at least '
                          f'{task.min_seq_len}')
  for s in sw.seeds:
    if _as_int('seed', s) < 0:
      raise ConfigError(f'seed={s} is negative; seeds are integers >= 0')
  tc = config.get('train')
  if tc is not None:
    if _as_int('train.batch_size', tc.batch_size) <= 0:
      raise ConfigError(f'train.batch_size={tc.batch_size} must be a positive integer')
    if _as_int('train.steps', tc.steps) <= 0:
      raise ConfigError(f'train.steps={tc.steps} must be a positive integer')
    n = config.get('num_devices', 0) or jax.device_count()
    if tc.batch_size % n:
      raise ConfigError(f'train.batch_size={tc.batch_size} is not divisible by the {n} '
                        f'devices; use a multiple of {n}')
  mc = config.get('model')
  if mc is not None:
    if mc.hidden <= 0 or mc.layers <= 0:
      raise ConfigError(f'model.hidden={mc.hidden} and model.layers={mc.layers} must be > 0')
    if mc.get('positions', 'sinusoidal') not in ('sinusoidal', 'learned'):
      raise ConfigError(f'model.positions={mc.positions!r}; allowed: sinusoidal, learned')
    if mc.get('pool', 'cls') not in ('cls', 'mean'):
      raise ConfigError(f'model.pool={mc.pool!r}; allowed: cls, mean')
    from seqlab import cells
    if mc.get('recurrent_init', 'orthogonal') not in cells.RECURRENT_INITS:
      raise ConfigError(f'model.recurrent_init={mc.recurrent_init!r}; allowed: '
                        f'{", ".join(cells.RECURRENT_INITS)}')


def _as_int(name, v) -> int:
  try:
    if isinstance(v, bool) or int(v) != float(v):
      raise ValueError
    return int(v)
  except (TypeError, ValueError):
    raise ConfigError(f'{name}={v!r} is not an integer') from None


# ------------------------------------------------------------------------------- points
def points(config) -> list[dict]:
  sw = config.sweep
  return [dict(model=m, task=t, seq_len=int(n), seed=int(s))
          for t, n, m, s in itertools.product(sw.tasks, sw.seq_lens, sw.models, sw.seeds)]


def point_name(p: dict) -> str:
  return f'{p["model"]}-{p["task"]}-T{p["seq_len"]}-s{p["seed"]}'


def point_config(config, p: dict):
  c = copy.deepcopy(config)
  with c.unlocked():
    c.model.name = p['model']
    c.task.name = p['task']
    c.task.seq_len = p['seq_len']
    c.seed = p['seed']
  return c


def finished(workdir: str) -> dict[str, dict]:
  """point name -> its results.jsonl line, for the points already done."""
  return {r['point']: r for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
          if 'point' in r}


def record(workdir: str, p: dict, result: dict) -> dict:
  row = {'point': point_name(p), **result}
  if writer.is_writer():
    writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), row)
  return row


def run(config, workdir: str) -> list[dict]:
  """The training sweep: every (task, seq_len, model, seed) point, each trained by
  seqlab.train in workdir/<point>; finished points are not run again."""
  from seqlab import train
  validate(config)
  done = finished(workdir)
  rows = []
  for p in points(config):
    name = point_name(p)
    if name in done:
      print(f'[{name}] already finished; skipping')
      rows.append(done[name])
      continue
    result = train.train(point_config(config, p), os.path.join(workdir, name))
    rows.append(record(workdir, p, result))
  print(summary_table(rows))
  print(f'results: {os.path.join(workdir, "results.jsonl")}')
  return rows


def _fmt(x, spec='.4f'):
  return '-' if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def summary_table(rows: list[dict]) -> str:
  """Final held-out loss and accuracy against the chance level, one row per point."""
  head = (f'{"task":<8} {"T":>6} {"model":<12} {"seed":>4} {"params":>9} {"loss":>9} '
          f'{"chance":>9} {"loss/chance":>11} {"acc":>6}')
  lines = [head, '-' * len(head)]
  for r in rows:
    ratio = (r['final_loss'] / r['chance_loss']
             if r.get('final_loss') is not None and r.get('chance_loss') else None)
    lines.append(f'{r["task"]:<8} {r["seq_len"]:>6} {r["model"]:<12} {r["seed"]:>4} '
                 f'{r["num_params"]:>9,} {_fmt(r.get("final_loss")):>9} '
                 f'{_fmt(r.get("chance_loss")):>9} {_fmt(ratio, ".3f"):>11} '
                 f'{_fmt(r.get("final_accuracy"), ".3f"):>6}')
  return '\n'.join(lines)
