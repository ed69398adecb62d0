"""Run outputs: JSON files written atomically and metrics as JSON lines.

Only process 0 writes (multi-host runs share the workdir or copy it afterwards).
A file is written to a temporary name and renamed, so a killed run never leaves a
half-written JSON file behind.
"""
from __future__ import annotations

import errno
import json
import math
import os
import tempfile

import jax
import numpy as np


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
  d = os.path.dirname(os.path.abspath(path))
  os.makedirs(d, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=d, prefix='.tmp-', suffix=os.path.basename(path))
  try:
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


def write_json(path: str, obj) -> None:
  write_text_atomic(path, json.dumps(to_jsonable(obj), indent=2, sort_keys=True) + '\n')


def read_json(path: str):
  with open(path) as f:
    return json.load(f)


def read_jsonl(path: str) -> list[dict]:
  if not os.path.exists(path):
    return []
  rows = []
  with open(path) as f:
    for line in f:
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
  if not os.path.exists(path):
    return
  rows = read_jsonl(path)
  kept = [r for r in rows if r.get('step', 0) <= step and 'eval_loss' not in r]
  text = ''.join(json.dumps(r, sort_keys=True) + '\n' for r in kept)
  if text != open(path).read():  # also drops a torn last line from a killed run
    write_text_atomic(path, text)


def append_jsonl_atomic(path: str, row: dict) -> None:
  """Appends one line by rewriting the file under a new name and renaming it:
  readers see the old file or the new one, never a torn line."""
  old = open(path).read() if os.path.exists(path) else ''
  if old and not old.endswith('\n'):
    old += '\n'
  write_text_atomic(path, old + json.dumps(to_jsonable(row), sort_keys=True) + '\n')


class MetricWriter:
  """metrics.jsonl: one JSON object per logged step (appended, flushed per line).

  With tensorboard=True the same scalars also go to TensorBoard event files in
  workdir/tb through tensorboardX (no TensorFlow needed).
  """

  def __init__(self, workdir: str, tensorboard: bool = False):
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self._f = None
    self._tb = None
    if is_writer():
      os.makedirs(workdir, exist_ok=True)
      self._f = open(self.path, 'a')
      if tensorboard:
        import tensorboardX
        self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tb'))

  def write(self, step: int, metrics: dict) -> None:
    if self._f is None:
      return
    row = to_jsonable({'step': int(step), **metrics})
    try:
      self._f.write(json.dumps(row, sort_keys=True) + '\n')
      self._f.flush()
    except OSError as e:  # a torn last line is skipped by read_jsonl and truncated on resume
      raise _write_error(self.path, e) from None
    if self._tb is not None:
      for k, v in row.items():
        if k != 'step' and isinstance(v, (int, float)) and not isinstance(v, bool):
          self._tb.add_scalar(k, v, int(step))

  def close(self) -> None:
    if self._f is not None:
      self._f.close()
      self._f = None
    if self._tb is not None:
      self._tb.close()
      self._tb = None
