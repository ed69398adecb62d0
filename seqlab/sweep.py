"""Sweeps: validate a config, run each point in its own subdirectory, keep
results.jsonl (one line per finished point) and print a summary table.

A point is one (model, task, seq_len, seed); its model may name a kernel,
'MODEL:KERNEL' (seqlab.models.KERNELS). The studies (seqlab.studies) run their points
through these functions.
"""
from __future__ import annotations

import copy
import itertools
import math
import os

import jax

from seqlab import models
from seqlab.data import tasks
from seqlab.infra import storage, writer


class ConfigError(ValueError):
  """Bad user input: launch.py prints it as one line and exits with status 2."""


# --------------------------------------------------------------------------- validation
def _allowed(kind: str, value, table) -> None:
  if value not in table:
    raise ConfigError(f'unknown {kind} {value!r}; allowed: {", ".join(table)}')


def validate(config) -> None:
  """Checks every sweep axis and the sizes before anything compiles."""
  sw = config.get('sweep')
  if sw is None:
    return
  if not sw.models or not sw.tasks or not sw.seq_lens or not sw.seeds:
    raise ConfigError('the sweep is empty: --models, --tasks, --seq_lens and --seeds each '
                      'need at least one value')
  for m in sw.models:
    name, kernel = models.split_name(m)
    _allowed('model', name, models.MODELS)
    if kernel == 'auto':
      kernel = config.get('model', {}).get('kernel', 'auto')
    try:
      models.resolve_kernel(name, kernel)
    except ValueError as e:
      raise ConfigError(f'{e} (in --models={m})' if ':' in m else str(e)) from None
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
      if task.max_seq_len and n_int > task.max_seq_len:
        raise ConfigError(f'seq_len={n} is longer than the data of task {t!r} allows (at most '
                          f'{task.max_seq_len} tokens); use a shorter seq_len or more text')
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
    from seqlab.models import cells
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


# ------------------------------------------------------------------------------ workdir
_LOCKS = {}  # workdir -> open lock file, held until the process exits


def open_workdir(config, workdir: str, override: bool = False) -> None:
  """Locks `workdir` for this process and checks it was made by the same command.

  A second launch on a locked workdir fails (fcntl.flock, released by the kernel
  when the holder exits, even on kill -9); a bucket (gs://) has no locks. The
  workdir's config.json must equal the new config except for the sweep axes (they
  may grow or shrink: a point's own config is the rest plus its axis values);
  --override accepts a different config, keeping finished points and checkpoints
  made under the old one."""
  import fcntl
  import json
  if not writer.is_writer():
    return
  if storage.is_url(workdir):
    # A bucket has no file locks: say so once rather than pretend.
    print(f'note: {workdir} is a bucket; it is not locked against a second launch on the '
          f'same workdir (do not start one)', flush=True)
  else:
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, '.lock')
    f = open(path, 'a')
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.close()
      raise ConfigError(f'workdir {workdir} is in use by another launch (lock {path}); wait '
                        f'for it to finish or use a different --workdir') from None
    _LOCKS[os.path.abspath(workdir)] = f
  new = json.loads(json.dumps(writer.to_jsonable(config.to_dict())))
  cfg_path = os.path.join(workdir, 'config.json')
  if storage.exists(cfg_path) and not override:
    try:
      old = writer.read_json(cfg_path)
    except (OSError, ValueError):
      old = None  # unreadable (torn by a crash): rewritten below
    if old is not None:
      # The sweep axes may change, and so may what a run does rather than what it
      # computes (the report's redraw_only and sections).
      free = ('sweep', 'redraw_only', 'sections')
      diffs = _config_diffs({k: v for k, v in old.items() if k not in free},
                            {k: v for k, v in new.items() if k not in free})
      if diffs:
        raise ConfigError(f'workdir {workdir} was made with a different config '
                          f'({"; ".join(diffs[:3])}); use a new --workdir, or pass '
                          f'--override to keep its finished points anyway')
  writer.write_json(cfg_path, new)


def _config_diffs(old, new, prefix='') -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for k in sorted(set(old) | set(new)):
      out += _config_diffs(old.get(k, '<unset>'), new.get(k, '<unset>'), f'{prefix}{k}.')
    return out
  return [] if old == new else [f'{prefix[:-1]}: was {old!r}, now {new!r}']


# ------------------------------------------------------------------------------- points
def points(config) -> list[dict]:
  sw = config.sweep
  return [dict(model=m, task=t, seq_len=int(n), seed=int(s))
          for t, n, m, s in itertools.product(sw.tasks, sw.seq_lens, sw.models, sw.seeds)]


def point_name(p: dict) -> str:
  return f'{p["model"]}-{p["task"]}-T{p["seq_len"]}-s{p["seed"]}'


def point_config(config, p: dict, **model_fields):
  """A copy of config for one point: its axes that p gives (model as MODEL[:KERNEL],
  task, seq_len, seed) and any model fields given by name (e.g. spectral_radius=0.9)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    if 'model' in p:
      c.model.name, kernel = models.split_name(p['model'])
      if kernel != 'auto':
        c.model.kernel = kernel
    if 'task' in p:
      c.task.name = p['task']
    if 'seq_len' in p:
      c.task.seq_len = int(p['seq_len'])
    if 'seed' in p:
      c.seed = int(p['seed'])
    for k, v in model_fields.items():
      c.model[k] = v
  return c


def finished(workdir: str) -> dict[str, dict]:
  """point name -> its results.jsonl line, for the points already done."""
  return {r['point']: r for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
          if 'point' in r}


def record(workdir: str, p: dict, result: dict) -> dict:
  """Appends the point's results line: its name, the result, and its axes (the model
  as swept, MODEL[:KERNEL])."""
  row = {'point': point_name(p), **result, **p}
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
  if writer.is_writer():  # one table, not one per host
    print(summary_table(rows))
    print(f'results: {os.path.join(workdir, "results.jsonl")}')
  return rows


def fmt(x, spec='.4f'):
  return '-' if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, spec)


def summary_table(rows: list[dict]) -> str:
  """Final held-out loss and accuracy against the chance level, one row per point."""
  head = (f'{"task":<8} {"T":>6} {"model":<12} {"seed":>4} {"params":>9} {"loss":>9} '
          f'{"chance":>9} {"loss/chance":>11} {"acc":>6}')
  lines = [head, '-' * len(head)]
  for r in rows:
    ratio = (r['final_loss'] / r['chance_loss']
             if r.get('final_loss') is not None and r.get('chance_loss') else None)
    loss = (f'diverged at step {r["diverged_at_step"]}' if r.get('diverged_at_step') is not None
            else f'{fmt(r.get("final_loss")):>9} {fmt(r.get("chance_loss")):>9} '
                 f'{fmt(ratio, ".3f"):>11} {fmt(r.get("final_accuracy"), ".3f"):>6}')
    lines.append(f'{r["task"]:<8} {r["seq_len"]:>6} {r["model"]:<12} {r["seed"]:>4} '
                 f'{r["num_params"]:>9,} {loss}')
  return '\n'.join(lines)
