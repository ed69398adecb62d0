"""Points of a sweep run `config.jobs` at a time, each in a worker process of its own.

On a CPU one XLA process keeps about 1.3 cores busy with the small scans of these
studies, so a 2-core host trains two points at once about 1.4x faster than one after
the other. Every point is a pure function of its config, so the results are those of
jobs=1, bitwise (tests/test_jobs.py); only the wall time changes.

- The points of one group (the same point but for its seed and lr) go to one worker in
  turn, so the points after the first reuse its compiled programs; the longest groups
  start first.
- Results are handed back in point order, whatever order the workers finish in.
- Each worker's own output goes to <point>/log.txt; the parent prints one line a point.
- Ctrl-C (which a terminal sends to the workers too) or a SIGTERM (which the parent
  passes on to them): the running points save a checkpoint and stop, points not started
  are not started, and the exit status is train's (130 after Ctrl-C, 143 after SIGTERM).
  Run the same command to resume.
- Off a CPU (an accelerator is one device shared by the processes) and in a
  multi-process run, points run one at a time, and a line says so.
"""
from __future__ import annotations

import concurrent.futures as futures
import multiprocessing
import os
import signal
import sys
import traceback
from typing import Callable

from seqlab.infra import preemption, storage


def effective(jobs: int) -> int:
  """The jobs this host runs at once: `jobs` on a single-process CPU host, else 1."""
  import jax
  jobs = max(int(jobs or 1), 1)
  if jobs > 1 and (jax.default_backend() != 'cpu' or jax.process_count() > 1):
    why = (f'{jax.process_count()} processes' if jax.process_count() > 1
           else f'the {jax.default_backend()} backend')
    print(f'jobs={jobs}: points run one at a time with {why} (jobs applies to a '
          f'single-process CPU host)', flush=True)
    return 1
  return jobs


def _group(p: dict) -> tuple:
  """A point's group: the point but for its seed and lr (one model: its initialisation
  and evaluation step are built once in the worker)."""
  return tuple(sorted((k, str(v)) for k, v in p.items() if k not in ('seed', 'lr')))


def _cost(points: list[dict]) -> float:
  """A group's rough training time, to start the longest first: its sequence lengths,
  an attention model's counted 4x (its step on a CPU is ~4x a recurrent one's at T=128,
  experiments/long_range.py). Only the order of starting depends on it."""
  return sum(p.get('seq_len', 1) * (4 if str(p.get('model', '')).startswith('transformer')
                                     else 1) for p in points)


def schedule(points: list[dict]) -> list[list[int]]:
  """The groups of `points` (runs of consecutive points of one _group), as lists of
  indices, in the order the workers start them: the longest first, so that no long group
  starts last with the other workers idle (longest-processing-time-first)."""
  groups: list[list[int]] = []
  for i, p in enumerate(points):
    if groups and _group(points[groups[-1][0]]) == _group(p):
      groups[-1].append(i)
    else:
      groups.append([i])
  return sorted(groups, key=lambda g: -_cost([points[i] for i in g]))


CACHE_KEYS = ('jax_compilation_cache_dir', 'jax_persistent_cache_min_compile_time_secs',
              'jax_persistent_cache_min_entry_size_bytes', 'jax_compilation_cache_max_size')
CACHE_MAX_BYTES = 2 * 2 ** 30   # the cache's cap: least recently used entries go beyond it


def user_cache_dir() -> str:
  """This user's compilation cache: $XDG_CACHE_HOME/seqlab/jax, else ~/.cache/seqlab/jax."""
  base = os.environ.get('XDG_CACHE_HOME') or os.path.join(os.path.expanduser('~'), '.cache')
  return os.path.join(base, 'seqlab', 'jax')


def compile_cache(workdir: str) -> None:
  """Jax's persistent compilation cache, per user and outside the workdir
  (user_cache_dir, made 0700, capped at CACHE_MAX_BYTES unless
  JAX_COMPILATION_CACHE_MAX_SIZE is set; JAX_COMPILATION_CACHE_DIR, or an earlier study
  of a report, sets another, which keeps jax's settings as given): the seeds of a point
  build the same programs, every worker of a sweep shares them, and a rerun compiles
  nothing. Every program is kept, however quick to
  compile: a point's evaluation step (~0.5 s) and the small eager programs that
  initialise a model (2-8 s of them for each new model in a process) are then built
  once. A workdir someone else shares is never a source of executables; a folder others
  may write to is not used; a torn entry (a process killed while jax wrote it) is
  removed, so it is compiled and written again (repair_cache). `workdir` is unused: the
  studies name it to say which run asks."""
  del workdir
  import importlib.util

  import jax
  path = jax.config.jax_compilation_cache_dir
  if not path:
    path = user_cache_dir()
    try:
      os.makedirs(path, mode=0o700, exist_ok=True)
      st = os.stat(path)
    except OSError:
      return   # no cache (a read-only home): every program compiles, nothing else changes
    if st.st_uid != os.getuid() or st.st_mode & 0o022:
      print(f'note: the compilation cache {path} is not this user\'s own (or others may '
            f'write to it); it is not used: every program compiles', flush=True)
      return
    jax.config.update('jax_compilation_cache_dir', path)
    jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
    # jax's default is no cap; its cap needs filelock (a dependency of datasets). Only
    # here: every process that writes this folder then keeps the cap's access times.
    if jax.config.jax_compilation_cache_max_size == -1 and importlib.util.find_spec(
        'filelock'):
      jax.config.update('jax_compilation_cache_max_size', CACHE_MAX_BYTES)
  if not storage.is_url(path):
    removed = repair_cache(path, capped=jax.config.jax_compilation_cache_max_size != -1)
    if removed:
      print(f'note: removed {removed} torn entr{"y" if removed == 1 else "ies"} from the '
            f'compilation cache {path}; compiled again once', flush=True)


VERIFIED = '.seqlab-verified.json'   # cache entries checked whole: name -> [size, mtime]


def repair_cache(path: str, capped: bool = False) -> int:
  """Removes the entries of jax's cache folder `path` that do not decompress (torn by a
  kill while jax wrote them: jax would warn and recompile on every run, and never
  rewrite them); returns how many. Each entry is checked once (VERIFIED remembers it),
  under jax's own lock of the folder (held by a capped cache's reads and writes). With
  `capped`, an entry written without the cap gets the access time the cap's eviction
  reads (jax fails to write into a capped folder with an entry that lacks one)."""
  import json
  try:
    import filelock
    from jax._src.compilation_cache import decompress_executable
  except ImportError:   # a jax without these internals: entries are not checked
    return 0
  try:
    names = [n for n in os.listdir(path) if n.endswith('-cache')]
  except OSError:
    return 0
  index_path = os.path.join(path, VERIFIED)
  removed = 0
  try:
    with filelock.FileLock(os.path.join(path, '.lockfile'), timeout=10):
      try:
        with open(index_path) as f:
          seen = json.load(f)
      except (OSError, ValueError):
        seen = {}
      seen = seen if isinstance(seen, dict) else {}
      index = {}
      for n in names:
        p = os.path.join(path, n)
        try:
          st = os.stat(p)
          stamp = [st.st_size, st.st_mtime_ns]
          data = None
          if seen.get(n) != stamp:
            with open(p, 'rb') as f:
              data = f.read()
        except OSError:
          continue
        if data is not None:
          try:
            decompress_executable(data)
          except Exception:  # a truncated stream (zlib's or zstd's error): a torn entry
            for q in (p, p[:-len('-cache')] + '-atime'):
              if os.path.exists(q):
                os.unlink(q)
            removed += 1
            continue
        atime = p[:-len('-cache')] + '-atime'
        if capped and not os.path.exists(atime):
          with open(atime, 'wb') as f:
            f.write(st.st_mtime_ns.to_bytes(8, 'little'))
        index[n] = stamp
      if index != seen:
        tmp = f'{index_path}.{os.getpid()}'
        with open(tmp, 'w') as f:
          json.dump(index, f)
        os.replace(tmp, index_path)
  except (filelock.Timeout, OSError):
    pass   # busy or unwritable: jax warns about a torn entry and compiles it
  return removed


_TERM = []   # in a worker: a SIGTERM came while no point was training


def _worker_init(cache: dict):
  # A SIGTERM between points (compiling, loading) must not kill the worker: it stops
  # the group before its next point instead; inside train.train, train's own handler
  # saves a checkpoint.
  signal.signal(signal.SIGTERM, lambda *_: _TERM.append(True))
  import jax
  for k, v in cache.items():   # the parent's compilation cache: one for every worker
    jax.config.update(k, v)


def _run_logged(fn: Callable, calls: list, log_dirs: list) -> tuple[list, object]:
  """Runs fn(*args) for each call in turn (one group), each with stdout and stderr in
  <log_dir>/log.txt; returns (the results of the calls that finished, the exception
  that stopped the group or None)."""
  out = []
  for args, log_dir in zip(calls, log_dirs):
    if _TERM:   # stopped before this point: not finished, as after a save (143)
      return out, SystemExit(128 + signal.SIGTERM)
    saved = os.dup(1), os.dup(2)
    log = None
    if log_dir and not storage.is_url(log_dir):
      os.makedirs(log_dir, exist_ok=True)
      from seqlab.infra import writer
      log = writer.open_append(os.path.join(log_dir, 'log.txt'))   # not through a link
      sys.stdout.flush(), sys.stderr.flush()
      os.dup2(log.fileno(), 1), os.dup2(log.fileno(), 2)
    try:
      out.append(fn(*args))
    except BaseException as e:   # SystemExit after a signal included
      if not isinstance(e, SystemExit):
        traceback.print_exc()
      return out, e
    finally:
      sys.stdout.flush(), sys.stderr.flush()
      os.dup2(saved[0], 1), os.dup2(saved[1], 2)
      os.close(saved[0]), os.close(saved[1])
      if log:
        log.close()
  return out, None


def run(jobs: int, fn: Callable, todo: list[tuple[dict, tuple, str]],
        on_result: Callable[[dict, object], None], announce: bool = False) -> None:
  """Calls fn(*args) for each (point, args, log_dir) of `todo`, config.jobs = `jobs` at a
  time where this host allows (`effective`), and on_result(point, result) in the order
  of `todo`. fn must be a module-level function (it is pickled). With `announce`, a
  point finished by a worker also gets one line (`line`): fn's own are in its log."""
  jobs = effective(jobs) if len(todo) > 1 else 1
  if jobs == 1:
    for p, args, _ in todo:
      on_result(p, fn(*args))
    return
  groups = schedule([p for p, _, _ in todo])
  results: dict[int, object] = {}
  done_upto = 0
  status = None   # the exit status once a signal or a failure stops the run
  error = None
  import jax
  cache = {k: getattr(jax.config, k) for k in CACHE_KEYS}
  pool = futures.ProcessPoolExecutor(max_workers=jobs, initializer=_worker_init,
                                     initargs=(cache,), mp_context=multiprocessing.get_context('spawn'))
  with preemption.Preemption(notice=lambda *a, **k: None) as stop:
    pending = {pool.submit(_run_logged, fn, [todo[i][1] for i in g],
                           [todo[i][2] for i in g]): g for g in groups}
    forwarded = False
    while pending:
      ready, _ = futures.wait(pending, timeout=0.5, return_when=futures.FIRST_COMPLETED)
      if stop.requested and not forwarded:
        forwarded = True
        print(f'{stop.name}: the running points save a checkpoint and stop; the others '
              f'are not started', file=sys.stderr, flush=True)
        for f in pending:
          f.cancel()
        if stop.signum == signal.SIGTERM:   # a terminal's Ctrl-C reached them already
          for proc in list(getattr(pool, '_processes', {}).values()):
            try:
              os.kill(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
              pass
      for f in ready:
        g = pending.pop(f)
        if f.cancelled():
          continue
        try:
          finished, exc = f.result()
          for i, r in zip(g, finished):
            results[i] = r
          if isinstance(exc, SystemExit):   # a point stopped by the signal
            status = exc.code if isinstance(exc.code, int) else 1
          elif isinstance(exc, KeyboardInterrupt):   # a second Ctrl-C
            status = 130
          elif exc is not None:
            raise exc
        except futures.process.BrokenProcessPool:
          error = error or RuntimeError(
              f'a worker process died while training {todo[g[0]][0]} (killed, or out of '
              f'memory?); see {os.path.join(todo[g[0]][2] or ".", "log.txt")}')
        except BaseException as e:   # the first failure stops the run, as with jobs=1
          error = error or e
        if error is not None:
          for other in pending:
            other.cancel()
      while done_upto < len(todo) and done_upto in results:
        p, _, log_dir = todo[done_upto]
        result = results.pop(done_upto)
        on_result(p, result)
        if announce:
          print(line(os.path.basename(log_dir), result), flush=True)
        done_upto += 1
  pool.shutdown(wait=True, cancel_futures=True)
  if error is not None:
    raise error
  if stop.requested or status is not None:
    sys.exit(stop.exit_status() if status is None else status)


def line(name: str, result: dict) -> str:
  """One line for a point a worker finished: its held-out loss against chance."""
  if result.get('diverged_at_step') is not None:
    what = f'diverged at step {result["diverged_at_step"]}'
  else:
    loss = result.get('final_loss')
    what = (f'held-out loss {loss:.4f} vs chance {result.get("chance_loss", float("nan")):.4f}'
            if loss is not None else 'no held-out loss')
  return f'[{name}] {what}; done in {result.get("wall_s", 0.0):.1f}s'


def train_quiet(config, workdir: str) -> dict:
  """seqlab.train.train without its per-step lines (a study that prints one line a point)."""
  from seqlab import train
  return train.train(config, workdir, verbose=False)
