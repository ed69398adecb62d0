"""The workdir of a run: checked before anything is written, locked against a second
launch, and held to the config that made it (seqlab.sweep's points live in it); the
points --rerun forgets, never a folder outside it."""
from __future__ import annotations

import fnmatch
import json
import os
import shutil

from seqlab import sweep, sweep_checks
from seqlab.infra import storage, writer
from seqlab.sweep import ConfigError

_LOCKS = {}  # workdir -> open lock file, held until the process exits


def check_workdir(workdir: str) -> None:
  """Read-only checks of a local workdir before anything is written: it is a folder
  (or does not exist yet) and this user may write in it (or in its nearest existing
  parent). Raises ConfigError (one line)."""
  if storage.is_url(workdir):
    return
  path = os.path.abspath(workdir)
  if os.path.exists(path) and not os.path.isdir(path):
    raise ConfigError(f'workdir {workdir} is a file, not a folder; give a folder with '
                      f'--workdir (it is made when missing)')
  parent = path
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  if not os.path.isdir(parent):
    raise ConfigError(f'workdir {workdir} cannot be made: {parent} is a file, not a folder')
  if not os.access(parent, os.W_OK | os.X_OK):
    raise ConfigError(f'workdir {workdir} is not writable by this user ({parent} is not); '
                      f'use a --workdir you may write to')


def open_workdir(config, workdir: str, override: bool = False) -> None:
  """Locks `workdir` for this process and checks it was made by the same command.

  A second launch on a locked workdir fails (fcntl.flock, released by the kernel
  when the holder exits, even on kill -9); a bucket (gs://) has no locks. The
  workdir's config.json must equal the new config except for the sweep axes (they
  may grow or shrink: a point's own config is the rest plus its axis values);
  --override accepts a different config, keeping finished points and checkpoints
  made under the old one. Any problem with the workdir itself (a file, not writable,
  a full disk) is a ConfigError, and what this call made is removed again."""
  if not writer.is_writer():
    return
  check_workdir(workdir)
  made = []  # what this call created, removed again if it fails
  try:
    _open_workdir(config, workdir, override, made)
  except (OSError, writer.WriteError) as e:
    for path in reversed(made):
      if os.path.isdir(path):
        shutil.rmtree(path, ignore_errors=True)
      elif os.path.exists(path):
        os.unlink(path)
    f = _LOCKS.pop(os.path.abspath(workdir), None)
    if f is not None:
      f.close()
    why = str(e) if isinstance(e, writer.WriteError) else (e.strerror or str(e))
    raise ConfigError(f'workdir {workdir} cannot be used: {why}') from None


def _open_workdir(config, workdir, override, made) -> None:
  import fcntl
  if storage.is_url(workdir):
    # A bucket has no file locks: say so once rather than pretend.
    print(f'note: {workdir} is a bucket; it is not locked against a second launch on the '
          f'same workdir (do not start one)', flush=True)
  else:
    top = os.path.abspath(workdir)
    while not os.path.exists(os.path.dirname(top)):
      top = os.path.dirname(top)
    if not os.path.exists(top):
      made.append(top)
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, '.lock')
    if not os.path.exists(path):
      made.append(path)
    f = writer.open_append(path)   # not through a symbolic link
    try:
      fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
      f.close()
      raise ConfigError(f'workdir {workdir} is in use by another launch (lock {path}); wait '
                        f'for it to finish or use a different --workdir') from None
    _LOCKS[os.path.abspath(workdir)] = f
  new = json.loads(json.dumps(writer.to_jsonable(config.to_dict())))
  cfg_path = os.path.join(workdir, 'config.json')
  if storage.exists(cfg_path):
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
      if diffs and not override:
        raise ConfigError(f'workdir {workdir} was made with a different config '
                          f'({"; ".join(diffs[:3])}); use a new --workdir, or pass '
                          f'--override to keep its finished points anyway')
      if diffs:   # --override: the config the finished points were made with is kept
        kept = _keep_old_config(cfg_path, old)
        print(f'--override: the old config.json is kept as {kept}', flush=True)
  writer.write_json(cfg_path, new)


def _keep_old_config(cfg_path: str, old) -> str:
  """Writes `old` to the first free config.json.N (N = 1, 2, ...); returns its path."""
  n = 1
  while storage.exists(f'{cfg_path}.{n}'):
    n += 1
  writer.write_json(f'{cfg_path}.{n}', old)
  return f'{cfg_path}.{n}'


def _config_diffs(old, new, prefix='') -> list[str]:
  if isinstance(old, dict) and isinstance(new, dict):
    out = []
    for k in sorted(set(old) | set(new)):
      out += _config_diffs(old.get(k, '<unset>'), new.get(k, '<unset>'), f'{prefix}{k}.')
    return out
  return [] if old == new else [f'{prefix[:-1]}: was {old!r}, now {new!r}']


# ------------------------------------------------------------------------------ --rerun
def own_point_names(study, config) -> set[str] | None:
  """The name of every point `config` can make, the only ones --rerun may forget: the
  study's own points() and point_name() where it has both, else the sweep's axes (for
  the studies that name points with point_name here); None for a study that names its
  points otherwise (then only safe_point_name's check applies)."""
  if hasattr(study, 'points') and hasattr(study, 'point_name'):
    return {study.point_name(p) for p in study.points(config)}
  if hasattr(study, 'point_name'):
    return None
  sw = config.get('sweep')
  if sw is None or not all(sw.get(k) for k in ('models', 'tasks', 'seq_lens', 'seeds')):
    return None
  return set(sweep_checks.sweep_names(sw))


def safe_point_name(workdir: str, name) -> bool:
  """Whether `name` is one point folder directly inside workdir: one path component
  (not empty, '.', '..' or hidden, no separator), whose real path (symbolic links
  resolved) is workdir/<name>, and that holds a config.json if it exists. A results row is data: a crafted one ('../victim', '', '/etc')
  must name nothing outside the workdir, nor the workdir itself."""
  if not isinstance(name, str) or not name or name.startswith('.') or '/' in name \
      or os.sep in name or '\0' in name:
    return False
  if storage.is_url(workdir):
    return True
  top = os.path.realpath(workdir)
  if os.path.realpath(os.path.join(top, name)) != os.path.join(top, name):
    return False
  # an existing folder must be a point's (train writes its config.json first), not the
  # workdir's figures/ or anything else a crafted row names
  return not os.path.exists(os.path.join(top, name)) or os.path.isfile(
      os.path.join(top, name, 'config.json'))


def select_rerun(workdir: str, patterns: list[str], own: set[str] | None = None) -> list[str]:
  """The finished points that --rerun names: point names, shell patterns (lstm-*), or
  'diverged' (every point that diverged), among the rows of results.jsonl that are
  points of this config (`own`, from own_point_names; None: any) with a safe name
  (safe_point_name); any other row is never chosen. Raises ConfigError for a pattern
  that matches no finished point, naming those there are; 'diverged' with none
  diverged chooses nothing (the launcher says so and exits 0)."""
  done = {n: r for n, r in sweep.finished(workdir).items()
          if safe_point_name(workdir, n) and (own is None or n in own)}
  chosen = []
  for pat in patterns:
    if pat == 'diverged':
      hits = [n for n, r in done.items() if r.get('diverged_at_step') is not None]
      if not hits:
        continue
    else:
      hits = fnmatch.filter(done, pat)
    if not hits:
      have = ', '.join(list(done)[:8]) + (' ...' if len(done) > 8 else '')
      raise ConfigError(f'--rerun={pat}: no finished point of {workdir} matches; finished: '
                        f'{have or "none"} (or diverged)')
    chosen += [n for n in hits if n not in chosen]
  return chosen


def forget(workdir: str, names: list[str]) -> None:
  """Removes the points `names` from results.jsonl (atomically) and deletes their
  folders (checkpoints, metrics), so the next run trains them from the start. Every
  other point is kept as it was. A name that is not safe_point_name (select_rerun never
  gives one; a point folder that is a symbolic link is not one) deletes nothing."""
  names = [n for n in names if safe_point_name(workdir, n)]
  if not names or not writer.is_writer():
    return
  path = os.path.join(workdir, 'results.jsonl')
  kept = [r for r in writer.read_jsonl(path) if r.get('point') not in names]
  writer.write_text_atomic(path, ''.join(json.dumps(r, sort_keys=True) + '\n' for r in kept))
  for n in names:
    storage.rmtree(os.path.join(workdir, n))
  print(f'rerunning {len(names)} point(s) from the start: {", ".join(names)}', flush=True)
