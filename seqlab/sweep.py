"""Sweeps: validate a config, run each point in its own subdirectory, keep
results.jsonl (one line per finished point) and print a summary table.

A point is one (model, task, seq_len, seed), and one lr where the config sweeps
sweep.lrs; its model may name a kernel, 'MODEL:KERNEL' (seqlab.models.KERNELS). The studies (seqlab.studies) run their points
through these functions.
"""
from __future__ import annotations

import copy
import fnmatch
import itertools
import json
import math
import os
from collections import defaultdict

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
    try:
      models.split_variant(m)
    except ValueError as e:
      raise ConfigError(str(e)) from None
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
  built = {}   # task name -> its Task, for the models' build check below
  for t in sw.tasks:
    tc = copy.deepcopy(config.task)
    with tc.unlocked():
      tc.name = t
    try:
      task = tasks.build(tc)
    except (ValueError, OSError) as e:  # builders raise one-line messages for bad data
      raise ConfigError(str(e)) from None
    built[t] = task
    for n in sw.seq_lens:
      n_int = _as_int('seq_len', n)
      if task.fixed_len and n_int != task.max_seq_len:
        raise ConfigError(f'seq_len={n}: task {t!r} reads sequences of exactly '
                          f'{task.max_seq_len} steps; use --seq_lens={task.max_seq_len}')
      if n_int < task.min_seq_len:
        raise ConfigError(f'seq_len={n} is too short for task {t!r}: it needs at least '
                          f'{task.min_seq_len}')
      if task.max_seq_len and n_int > task.max_seq_len:
        raise ConfigError(f'seq_len={n} is longer than the data of task {t!r} allows (at most '
                          f'{task.max_seq_len} tokens); use a shorter seq_len or more text')
  for s in sw.seeds:
    if _as_int('seed', s) < 0:
      raise ConfigError(f'seed={s} is negative; seeds are integers >= 0')
  for lr in sw.get('lrs', ()):
    check_value('sweep.lrs', lr, float, _positive, 'finite and > 0 (each value)')
  lr_seeds = sw.get('lr_seeds', 0)
  check_value('sweep.lr_seeds', lr_seeds, int, _non_negative,
              '>= 0 (0: every lr at every seed; k: the lr chosen on the first k seeds, then held)')
  if lr_seeds and not sw.get('lrs'):
    raise ConfigError(f'sweep.lr_seeds={lr_seeds} chooses an lr, but sweep.lrs is empty; give '
                      f'--lrs (e.g. 1e-3,3e-3,1e-2) or sweep.lr_seeds=0')
  if sw.get('lr_at', 'each') not in LR_AT:
    raise ConfigError(f'sweep.lr_at={sw.lr_at!r}; allowed: {", ".join(LR_AT)}')
  from seqlab import sweep_checks   # it imports this module: here, not at the top
  names = sweep_checks.sweep_names(sw)
  for pat in sw.get('skip', ()):
    if not fnmatch.filter(names, pat):
      raise ConfigError(f'sweep.skip={pat!r} matches no point of the sweep; points are named '
                        f'MODEL-TASK-T<len>[-lr<lr>]-s<seed>, e.g. {names[0]}')
  check_ranges(config)
  tc = config.get('train')
  if tc is not None:
    n = config.get('num_devices', 0) or jax.device_count()
    if tc.batch_size % n:
      raise ConfigError(f'train.batch_size={tc.batch_size} is not divisible by the {n} '
                        f'devices; use a multiple of {n}')
  mc = config.get('model')
  if mc is not None:
    if mc.get('positions', 'sinusoidal') not in ('sinusoidal', 'learned'):
      raise ConfigError(f'model.positions={mc.positions!r}; allowed: sinusoidal, learned')
    if mc.get('pool', 'cls') not in ('cls', 'mean'):
      raise ConfigError(f'model.pool={mc.pool!r}; allowed: cls, mean')
    from seqlab.models import cells
    if mc.get('recurrent_init', 'orthogonal') not in cells.RECURRENT_INITS:
      raise ConfigError(f'model.recurrent_init={mc.recurrent_init!r}; allowed: '
                        f'{", ".join(cells.RECURRENT_INITS)}')
    if mc.get('gate_init', 'constant') not in cells.GATE_INITS:
      raise ConfigError(f'model.gate_init={mc.gate_init!r}; allowed: '
                        f'{", ".join(cells.GATE_INITS)}')
    if mc.get('dtype', 'float32') not in models.DTYPES:
      raise ConfigError(f'model.dtype={mc.dtype!r}; allowed: {", ".join(models.DTYPES)}')
    sweep_checks.check_models_build(config, built)
  task = config.get('task')
  if task is not None and task.get('path') and task.get('dataset'):
    # The text tasks read task.path only when task.dataset is empty: say so, not ignore it.
    raise ConfigError(f'task.path={task.path!r} is not read while task.dataset='
                      f'{task.dataset!r}; add --config.task.dataset= (empty) to read the file, '
                      f'or drop task.path')


# ------------------------------------------------------------------------------- ranges
def _positive(v):
  return v > 0


def _non_negative(v):
  return v >= 0


def _fraction(v):
  return 0 <= v <= 1


def _open_fraction(v):
  return 0 < v < 1


# The most optimiser steps a setting may ask for: 1e9 steps of the smallest point (~1 ms
# each on a CPU) are ~12 days; more is a typo (steps=1e20 would be ~3e9 years).
MAX_STEPS = 10 ** 9
_steps, _steps_or_0 = (lambda v: 0 < v <= MAX_STEPS), (lambda v: 0 <= v <= MAX_STEPS)


# Every numeric setting a study reads: (dotted key, type, check, the allowed range in
# words). Checked before anything compiles; a key a config lacks is skipped.
RANGES = [
    ('seed', int, _non_negative, '>= 0'),
    ('num_devices', int, _non_negative, '>= 0 (0: every device)'),
    ('jobs', int, _positive, '>= 1 (points trained at once on a CPU host)'),
    ('cpu_devices', int, _non_negative, '>= 0 (0: jax\'s default of one)'),
    ('train.steps', int, _steps, f'> 0 and at most {MAX_STEPS:.0e}'),
    ('train.batch_size', int, _positive, '> 0'),
    ('train.lr', float, _positive, 'finite and > 0'),
    ('train.warmup_steps', int, _steps_or_0, f'>= 0 and at most {MAX_STEPS:.0e}'),
    ('train.weight_decay', float, _non_negative, 'finite and >= 0'),
    ('train.clip_norm', float, _non_negative, 'finite and >= 0 (0: no clipping)'),
    ('train.final_lr_fraction', float, _fraction, 'in [0, 1]'),
    ('train.log_every', int, _positive, '> 0'),
    ('train.eval_examples', int, _positive, '> 0'),
    ('train.checkpoint_every', int, _non_negative, '>= 0 (0: only at the end and on '
                                                   'SIGTERM or Ctrl-C)'),
    ('train.keep_checkpoints', int, _positive, '> 0'),
    ('train.skip_nonfinite', int, _non_negative, '>= 0 (0: stop at the first)'),
    ('model.hidden', int, _positive, '> 0'),
    ('model.layers', int, _positive, '> 0'),
    ('model.param_budget', int, _non_negative, '>= 0 (0: no budget)'),
    ('model.heads', int, _positive, '> 0'),
    ('model.mlp_ratio', int, _positive, '> 0 (the MLP is mlp_ratio x model.hidden wide)'),
    ('model.unroll', int, _positive, '> 0'),
    ('model.spectral_radius', float, _positive, 'finite and > 0'),
    ('model.forget_bias', float, lambda v: True, 'finite'),
    ('model.update_bias', float, lambda v: True, 'finite'),
    ('model.chrono_t_max', int, _non_negative, '>= 0 (0: the sequence length)'),
    ('model.r_min', float, _open_fraction, 'in (0, 1)'),
    ('model.r_max', float, lambda v: 0 < v <= 1, 'in (0, 1]'),
    ('task.seq_len', int, _positive, '> 0'),
    ('task.eval_fraction', float, _open_fraction, 'in (0, 1)'),
    ('grad_flow.batch_size', int, _positive, '> 0'),
    ('grad_flow.train_steps', int, _steps_or_0, f'>= 0 (0: no trained phase) and at most '
                                                 f'{MAX_STEPS:.0e}'),
    ('grad_flow.train_seq_len', int, _positive, '> 0'),
    ('grad_flow.rho_seq_len', int, _positive, '> 0'),
    ('impulse.directions', int, _positive, '> 0'),
    ('bench.hidden', int, _positive, '> 0'),
    ('bench.heads', int, _positive, '> 0'),
    ('bench.batch', int, _positive, '> 0'),
    ('bench.steps', int, _steps, f'> 0 and at most {MAX_STEPS:.0e}'),
    ('bench.warmup', int, _steps_or_0, f'>= 0 and at most {MAX_STEPS:.0e}'),
    ('bench.unroll', int, _positive, '> 0'),
    ('bench.max_step_s', float, _positive, 'finite and > 0'),
]
TYPE_WORDS = {int: 'an integer', float: 'a number', bool: 'true or false', str: 'a string'}


def lookup(config, key: str):
  """config's value at dotted `key`, or KeyError."""
  node = config
  for part in key.split('.'):
    if not hasattr(node, 'keys') or part not in node:
      raise KeyError(key)
    node = node[part]
  return node


def check_value(key: str, v, kind, ok, allowed: str) -> None:
  """Raises ConfigError naming `key`, its value, its type and its range."""
  if kind is int:
    good = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v) \
        and int(v) == v
  else:
    good = not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)
  if not good or not ok(v):
    raise ConfigError(f'config.{key}={v!r} is not allowed: it must be {TYPE_WORDS[kind]}, '
                      f'{allowed}')


def check_ranges(config) -> None:
  """Every numeric setting in RANGES against its type and range."""
  for key, kind, ok, allowed in RANGES:
    try:
      v = lookup(config, key)
    except KeyError:
      continue
    check_value(key, v, kind, ok, allowed)
  mc = config.get('model')
  if mc is not None and 'r_min' in mc and 'r_max' in mc and not mc.r_min < mc.r_max:
    raise ConfigError(f'model.r_min={mc.r_min} must be below model.r_max={mc.r_max}')
  gf = config.get('grad_flow')
  if gf is not None:
    for rho in gf.get('rhos', []):
      check_value('grad_flow.rhos', rho, float, _positive, 'finite and > 0 (each value)')
  from seqlab import sweep_checks
  sweep_checks.check_widths(config)


def _as_int(name, v) -> int:
  try:
    if isinstance(v, bool) or int(v) != float(v):
      raise ValueError
    return int(v)
  except (TypeError, ValueError):
    raise ConfigError(f'{name}={v!r} is not an integer') from None


# ------------------------------------------------------------------------------- points
def _skipped(config, p) -> bool:
  return any(fnmatch.fnmatch(point_name(p), pat) for pat in config.sweep.get('skip', ()))


def points(config) -> list[dict]:
  """The points the sweep trains first: every (task, seq_len, model[, lr], seed), lr only
  when sweep.lrs is set, less those whose name matches a pattern of sweep.skip.

  With sweep.lr_seeds set, the lr is chosen on those seeds (at the lengths of
  sweep.lr_seq_lens, or at each length when it is empty) and then held: these are the lr
  points only; held_points(config, rows) gives the rest once they are done."""
  return [p for p in _every_point(config.sweep) if not _skipped(config, p)]


LR_AT = ('each', 'shortest')   # sweep.lr_at: the lr chosen at each T, or at the shortest


def _lr_plan(sw) -> tuple[list[int], list[int]]:
  """(seeds, lengths) the lr is chosen on; ([], []) for a sweep that runs every lr at
  every point. sweep.lr_seeds = k: the first k seeds; sweep.lr_at: 'each' length (the
  choice per (model, task, T)) or the 'shortest' (per (model, task), held at every T)."""
  k = int(sw.get('lr_seeds', 0) or 0)
  if not k or not sw.get('lrs'):
    return [], []
  seeds = [int(x) for x in sw.seeds][:k]
  lens = [min(int(n) for n in sw.seq_lens)] if sw.get('lr_at', 'each') == 'shortest' else []
  return seeds, lens


def _every_point(sw) -> list[dict]:
  lrs = [float(lr) for lr in sw.get('lrs', ())] or [None]
  seeds, lens = _lr_plan(sw)
  scope = {} if not seeds else {'lr_scope': 'task' if lens else 'T'}
  return [dict(model=m, task=t, seq_len=int(n), seed=int(s), **({} if lr is None else {'lr': lr}),
               **scope)
          for t, n, m, lr, s in itertools.product(sw.tasks, sw.seq_lens, sw.models, lrs,
                                                  sw.seeds)
          if not seeds or (int(s) in seeds and (not lens or int(n) in lens))]


def held_points(config, rows: list[dict]) -> list[dict]:
  """With sweep.lr_seeds: the points left once the lr points are done, each at the lr
  choose_lrs picks from their rows (lr_select False); [] for any other sweep, or while
  an lr point of their scope has not finished."""
  sw = config.sweep
  seeds, lens = _lr_plan(sw)
  if not seeds:
    return []
  chosen = choose_lrs(rows)
  out = []
  for t, n, m, s in itertools.product(sw.tasks, sw.seq_lens, sw.models, sw.seeds):
    if int(s) in seeds and (not lens or int(n) in lens):
      continue                                     # an lr point itself
    key = (m, t) if lens else (m, t, int(n))
    if key not in chosen:
      continue
    p = dict(model=m, task=t, seq_len=int(n), seed=int(s), lr=chosen[key],
             lr_scope='task' if lens else 'T', lr_select=False)
    if not _skipped(config, p):
      out.append(p)
  return out


def _scope_key(r: dict) -> tuple:
  return ((r['model'], r['task']) if r.get('lr_scope') == 'task'
          else (r['model'], r['task'], r['seq_len']))


def choose_lrs(rows: list[dict]) -> dict[tuple, float]:
  """scope -> the chosen lr: among the rows that choose (lr_select, default True), the lr
  whose mean VALID loss / chance (over seeds, and lengths when the scope is a task) is
  lowest; a diverged seed or a row without a VALID loss counts as inf. The reported EVAL
  loss (final_loss) is never read. Scope: (model, task, T), or (model, task) for rows
  with lr_scope 'task'. Ties go to the smaller lr."""
  by = defaultdict(lambda: defaultdict(list))
  for r in rows:
    if 'lr' in r and r.get('lr_select', True):
      v = r.get('valid_loss') if r.get('valid_split', 'valid') == 'valid' else None
      by[_scope_key(r)][r['lr']].append(
          v / r['chance_loss'] if v is not None and math.isfinite(v) and r.get('chance_loss')
          else math.inf)
  return {key: min(sorted(lrs), key=lambda lr: sum(lrs[lr]) / len(lrs[lr]))
          for key, lrs in by.items()}


def point_name(p: dict) -> str:
  lr = f'-lr{p["lr"]:g}' if 'lr' in p else ''
  return f'{p["model"]}-{p["task"]}-T{p["seq_len"]}{lr}-s{p["seed"]}'


def point_config(config, p: dict, **model_fields):
  """A copy of config for one point: its axes that p gives (model as
  MODEL[:KERNEL][+VARIANT], task, seq_len, seed) and any model fields given by name (e.g.
  spectral_radius=0.9)."""
  c = copy.deepcopy(config)
  with c.unlocked():
    if 'model' in p:
      c.model.name, kernel = models.split_name(p['model'])
      if kernel != 'auto':
        c.model.kernel = kernel
      for k, v in models.split_variant(p['model'])[1].items():   # +chrono, +learned ...
        c.model[k] = v
    if 'task' in p:
      c.task.name = p['task']
    if 'seq_len' in p:
      c.task.seq_len = int(p['seq_len'])
    if 'seed' in p:
      c.seed = int(p['seed'])
    if 'lr' in p:
      c.train.lr = float(p['lr'])
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
  """The training sweep: every (task, seq_len, model[, lr], seed) point, each trained by
  seqlab.train in workdir/<point>, config.jobs at a time (seqlab.jobs); finished points
  are not run again."""
  from seqlab import jobs as jobs_lib
  from seqlab import train
  validate(config)
  jobs_lib.compile_cache(workdir)
  done = finished(workdir)
  rows = {}
  todo = []
  for p in points(config):
    name = point_name(p)
    if name in done:
      print(f'[{name}] already finished; skipping')
      rows[name] = done[name]
    else:
      point_dir = os.path.join(workdir, name)
      todo.append((p, (point_config(config, p), point_dir), point_dir))

  def on_result(p, result):
    rows[point_name(p)] = record(workdir, p, result)

  jobs_lib.run(config.get('jobs', 1), train.train, todo, on_result, announce=True)
  # A sweep that chooses its lr on some seeds first (sweep.lr_seeds) then trains the rest
  # of its points at the chosen lr.
  later = held_points(config, list(rows.values()))
  todo = []
  for p in later:
    name = point_name(p)
    if name in done:
      print(f'[{name}] already finished; skipping')
      rows[name] = done[name]
    else:
      point_dir = os.path.join(workdir, name)
      todo.append((p, (point_config(config, p), point_dir), point_dir))
  if todo:
    print(f'lr chosen on VALID (the first {config.sweep.lr_seeds} seed(s)): training '
          f'{len(todo)} more point(s) at it', flush=True)
    jobs_lib.run(config.get('jobs', 1), train.train, todo, on_result, announce=True)
  rows = [rows[point_name(p)] for p in points(config) + later]
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
    lr = f' lr {r["lr"]:g}' if 'lr' in r else ''
    lines.append(f'{r["task"]:<8} {r["seq_len"]:>6} {r["model"]:<12} {r["seed"]:>4} '
                 f'{r["num_params"]:>9,} {loss}{lr}')
  return '\n'.join(lines)
