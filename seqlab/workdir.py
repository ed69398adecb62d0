"""The workdir of a run: checked before anything is written, locked against a second
launch, and held to the config that made it (seqlab.sweep's points live in it)."""
from __future__ import annotations

import os
import shutil

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
  import json
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
