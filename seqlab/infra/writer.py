"""Run outputs: JSON files written atomically and metrics as JSON lines.

Only process 0 writes (multi-host runs share the workdir or copy it afterwards).
A local file is written to a temporary name and renamed, and a bucket object
(gs://, seqlab.storage) is only visible once its write completes, so a killed run
never leaves a half-written JSON file behind.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile
import time

import jax
import numpy as np

from seqlab.infra import storage


class WriteError(OSError):
  """A results file could not be written (e.g. the disk is full); launch.py prints it
  as one line and exits with status 1. The file is left as it was before."""


def _write_error(path: str, e: OSError) -> WriteError:
  why = 'no space left on the device' if e.errno == errno.ENOSPC else (e.strerror or str(e))
  return WriteError(f'could not write {path}: {why}; it was left as it was before. '
                    f'Free space (or fix the cause) and run the same command again to resume')


def is_writer() -> bool:
  return jax.process_index() == 0


def to_jsonable(x):
  """numpy/jax scalars and arrays -> plain Python; NaN and inf -> None (JSON null)."""
  if isinstance(x, dict):
    return {k: to_jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [to_jsonable(v) for v in x]
  if hasattr(x, 'tolist') and not isinstance(x, (str, bytes)):
    return to_jsonable(np.asarray(x).tolist())
  if isinstance(x, float) and not math.isfinite(x):
    return None
  return x


def write_text_atomic(path: str, text: str) -> None:
  if storage.is_url(path):
    try:
      storage.write_object(path, text.encode())
    except storage.SchemeError:
      raise
    except Exception as e:  # gcsfs/google-auth raise many types (no bucket, no credentials)
      why = ' '.join(str(e).split())[:200] or type(e).__name__
      raise WriteError(f'could not write {path}: {type(e).__name__}: {why}; it was left as '
                       f'it was before. Fix the cause and run the same command again '
                       f'to resume') from None
    return
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=d, prefix='.tmp-', suffix=os.path.basename(path))
  try:
    os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a results file follows the umask
    with os.fdopen(fd, 'w') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException as e:
    if os.path.exists(tmp):
      os.unlink(tmp)
    if isinstance(e, OSError) and not isinstance(e, WriteError):
      raise _write_error(path, e) from None
    raise


def _umask() -> int:
  """The process's umask, read without changing it: os.umask can only read it by
  setting it, and another thread creating a file in between would get the wrong mode.
  Linux states it in /proc/self/status; elsewhere the value read once at import
  (before any thread of ours starts) stands."""
  try:
    with open('/proc/self/status') as f:
      for line in f:
        if line.startswith('Umask:'):
          return int(line.split()[1], 8)
  except (OSError, ValueError, IndexError):
    pass
  return _UMASK_AT_IMPORT


def _read_umask_at_import() -> int:
  mask = os.umask(0o022)
  os.umask(mask)
  return mask


_UMASK_AT_IMPORT = _read_umask_at_import()


def open_append(path: str):
  """`path` opened to append text, never through a symbolic link (O_NOFOLLOW): a link
  planted in a shared workdir (metrics.jsonl -> ~/.bashrc) must not make a run write
  elsewhere. A new file follows the umask. Raises WriteError for a link."""
  try:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, 'O_NOFOLLOW', 0),
                 0o666)
  except OSError as e:
    if e.errno == errno.ELOOP or os.path.islink(path):
      raise WriteError(f'could not write {path}: it is a symbolic link, and seqlab appends '
                       f'only to plain files; remove the link and run the same command '
                       f'again') from None
    raise _write_error(path, e) from None
  return os.fdopen(fd, 'a')


def write_json(path: str, obj) -> None:
  write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + '\n')


def read_json(path: str):
  return json.loads(storage.read_text(path))


def read_jsonl(path: str) -> list[dict]:
  if not storage.exists(path):
    return []
  rows = []
  for line in storage.read_text(path).splitlines():
    line = line.strip()
    if line:
      try:
        rows.append(json.loads(line))
      except json.JSONDecodeError:  # a torn last line from a killed writer: skip it
        continue
  return rows


def truncate_jsonl(path: str, step: int) -> None:
  """Keeps only the training rows with 'step' <= step (atomically): a run resumed
  from checkpoint `step` then logs each later step exactly once."""
  if not storage.exists(path):
    return
  rows = read_jsonl(path)
  kept = [r for r in rows if r.get('step', 0) <= step and 'eval_loss' not in r]
  text = ''.join(json.dumps(r, sort_keys=True) + '\n' for r in kept)
  if text != storage.read_text(path):  # also drops a torn last line from a killed run
    write_text_atomic(path, text)


def append_jsonl_atomic(path: str, row: dict) -> None:
  """Appends one line by rewriting the file under a new name and renaming it:
  readers see the old file or the new one, never a torn line. A symbolic link is
  refused (WriteError), not read through."""
  if not storage.is_url(path) and os.path.islink(path):
    raise WriteError(f'could not write {path}: it is a symbolic link, and seqlab appends '
                     f'only to plain files; remove the link and run the same command again')
  old = storage.read_text(path) if storage.exists(path) else ''
  if old and not old.endswith('\n'):
    head, last = old[:old.rfind('\n') + 1], old[old.rfind('\n') + 1:]
    try:
      json.loads(last)
      old += '\n'
    except json.JSONDecodeError:  # a torn last line (a killed writer's): drop it
      old = head
  write_text_atomic(path, old + json.dumps(to_jsonable(row), sort_keys=True) + '\n')


class MetricWriter:
  """metrics.jsonl: one JSON object per logged step.

  Local: appended and flushed per line. In a bucket (no append): the new rows are kept
  in memory and appended at most every `flush_every_s` seconds, on flush() (the
  training loop calls it before each checkpoint, so a resumed run finds every row up
  to its checkpoint) and on close(); each append uploads only the new rows
  (storage.append_object composes them onto the object), so a long run's uploads grow
  linearly, not quadratically.

  With tensorboard=True the same scalars also go to TensorBoard event files in
  workdir/tb through tensorboardX (no TensorFlow needed; gs:// works too).
  """

  def __init__(self, workdir: str, tensorboard: bool = False, flush_every_s: float = 30.0):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._f = None
    self._tb = None
    self._bucket = storage.is_url(workdir)
    self._pending = ''        # bucket: the rows not yet appended
    self._components = 0      # bucket: the object's composed components (0: none yet)
    self._dirty = False
    self._flushed_at = time.time()
    self._flush_every_s = flush_every_s
    self._open = is_writer()   # only process 0 writes
    if self._open:
      if self._bucket:
        if storage.exists(self.path):
          text = storage.read_text(self.path)
          self._components = storage.component_count(self.path)
          if text and not text.endswith('\n'):
            self._pending = '\n'
      else:
        os.makedirs(workdir, exist_ok=True)
        self._f = open_append(self.path)
      if tensorboard:
        import tensorboardX
        self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))

  def write(self, step: int, metrics: dict) -> None:
    if not self._open:
      return
    row = to_jsonable({'step': int(step), **metrics})
    line = json.dumps(row, sort_keys=True) + '\n'
    if self._bucket:
      self._pending += line
      self._dirty = True
      if time.time() - self._flushed_at >= self._flush_every_s:
        self.flush()
    else:
      try:
        self._f.write(line)
        self._f.flush()
      except OSError as e:  # a torn last line is skipped by read_jsonl and truncated on resume
        raise _write_error(self.path, e) from None
    if self._tb is not None:
      for k, v in row.items():
        if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, int(step))

  def flush(self) -> None:
    """Makes every row written so far durable (a no-op locally: lines are flushed)."""
    if self._open and self._bucket and self._dirty:
      try:
        self._components = storage.append_object(self.path, self._pending.encode(),
                                                 self._components)
      except Exception as e:   # gcsfs/google-auth raise many types
        why = ' '.join(str(e).split())[:200] or type(e).__name__
        raise WriteError(f'could not append to {self.path}: {type(e).__name__}: {why}; the '
                         f'rows saved before are kept. Fix the cause and run the same '
                         f'command again to resume') from None
      self._pending = ''
      self._dirty = False
      self._flushed_at = time.time()
    if self._tb is not None:
      self._tb.flush()

  def close(self) -> None:
    if not self._open:
      return
    self.flush()
    if self._f is not None:
      self._f.close()
      self._f = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None
    self._open = False
