"""Where a run's files live: a local folder or a Cloud Storage bucket (gs://bucket/path).

Every study, writer and plot goes through these few functions, so
`--workdir=gs://bucket/runs/x` works the same as a local path: a TPU VM pod writes
straight to the bucket every host can see, and orbax checkpoints go there too (orbax
takes the same URL). Bucket paths use etils.epath (the path type orbax uses), which
talks to Cloud Storage through gcsfs (requirements.txt) and the machine's Application
Default Credentials (on a TPU VM: its service account).

What differs on a bucket, and how seqlab copes:
  - an object is replaced as a whole when its write completes, never seen half
    written: the atomic write needs no temporary name there;
  - there is no append: metrics.jsonl grows by composing (append_object): each flush
    uploads only its new rows, which Cloud Storage joins to the object server-side;
  - there are no real folders and no file locks: makedirs does nothing, and a bucket
    workdir is not locked against a second launch (seqlab.workdir.open_workdir says so).

Local paths keep plain os calls (POSIX rename, flock), exactly as before.
"""
from __future__ import annotations

import glob as glob_lib
import os
import shutil
import uuid

SCHEMES = ('gs://',)  # bucket URLs a workdir may use


class SchemeError(ValueError):
  """A workdir URL with a scheme seqlab does not write to."""


def is_url(path: str) -> bool:
  return '://' in str(path)


def check(path: str) -> None:
  """Raises SchemeError (one line) for a URL that is not gs://."""
  if is_url(path) and not str(path).startswith(SCHEMES):
    scheme = str(path).split('://', 1)[0]
    raise SchemeError(f'workdir {path}: scheme {scheme}:// is not supported; use a local '
                      f'path or {" or ".join(s + "bucket/path" for s in SCHEMES)}')


def _epath(path: str):
  from etils import epath
  check(path)
  return epath.Path(path)


def join(*parts: str) -> str:
  return os.path.join(*parts)  # also right for URLs: 'gs://b/x' + 'y' -> 'gs://b/x/y'


def abspath(path: str) -> str:
  """A local path made absolute; a URL is already absolute (os.path.abspath would
  turn gs://b/x into <cwd>/gs:/b/x)."""
  return str(path) if is_url(path) else os.path.abspath(path)


def exists(path: str) -> bool:
  return _epath(path).exists() if is_url(path) else os.path.exists(path)


def isdir(path: str) -> bool:
  return _epath(path).is_dir() if is_url(path) else os.path.isdir(path)


def makedirs(path: str) -> None:
  """A local folder (and its parents); nothing for a bucket, which has no folders."""
  if not is_url(path):
    os.makedirs(path, exist_ok=True)


def listdir(path: str) -> list[str]:
  """Names (not paths) in a folder, sorted; [] when it does not exist."""
  if not isdir(path):
    return []
  if is_url(path):
    return sorted(p.name for p in _epath(path).iterdir())
  return sorted(os.listdir(path))


def glob(folder: str, pattern: str) -> list[str]:
  """Sorted paths in `folder` matching `pattern` (one level, e.g. '*')."""
  if is_url(folder):
    return sorted(str(p) for p in _epath(folder).glob(pattern))
  return sorted(glob_lib.glob(os.path.join(folder, pattern)))


def read_text(path: str) -> str:
  if is_url(path):
    return _epath(path).read_text()
  with open(path) as f:
    return f.read()


def read_bytes(path: str) -> bytes:
  if is_url(path):
    return _epath(path).read_bytes()
  with open(path, 'rb') as f:
    return f.read()


def write_object(path: str, data: bytes) -> None:
  """Writes one bucket object whole (visible only once complete)."""
  with _epath(path).open('wb') as f:
    f.write(data)


# Cloud Storage holds at most 1,024 components in a composed object, and each append
# composes one more: at this many the object is written whole once (one component).
COMPOSE_LIMIT = 1000


def _gcsfs():
  import fsspec
  return fsspec.filesystem('gs')


def component_count(path: str) -> int:
  """How many composed components the bucket object holds (1 for a plain upload)."""
  return int(_gcsfs().info(path).get('componentCount') or 1)


def append_object(path: str, data: bytes, components: int) -> int:
  """Appends `data` to the bucket object `path` without uploading what it holds: the
  new bytes go up as an object of their own beside it, Cloud Storage composes the two
  into `path` server-side (the object is replaced whole, so a reader sees the old one
  or the new one), and the part is deleted. components: the object's count so far (0:
  there is none yet); returns its new count. At COMPOSE_LIMIT it is rewritten whole."""
  if components == 0 or not exists(path):
    write_object(path, data)
    return 1
  if components >= COMPOSE_LIMIT:
    write_object(path, read_bytes(path) + data)
    return 1
  part = f'{path}.part-{uuid.uuid4().hex[:12]}'
  write_object(part, data)
  fs = _gcsfs()
  try:
    fs.merge(path, [path, part])
  finally:
    fs.rm(part)
  return components + 1


def rmtree(path: str) -> None:
  if is_url(path):
    _epath(path).rmtree(missing_ok=True)
  else:
    shutil.rmtree(path, ignore_errors=True)
