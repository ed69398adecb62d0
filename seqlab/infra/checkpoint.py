"""Checkpoints of the full train state, behind one small API (the only module that
imports orbax, so an orbax API change touches this file alone).

  ckpt = CheckpointManager(os.path.join(workdir, 'checkpoints'), every=100, keep=2)
  restored = ckpt.restore_latest(abstract_state)   # (state, step) or None
  ckpt.save(step, state, metrics={'valid_loss': 0.12})
  ckpt.close()

The state is any pytree of jax arrays (seqlab: {'params', 'opt_state', 'step'}). It is
restored with the shardings of `abstract_state` (a pytree of jax.ShapeDtypeStruct with
.sharding set; `abstract(state)` builds one), so sharded and multi-host states work.
Every process of a multi-host run must call save() and restore_latest(): orbax
coordinates the processes and only the primary one writes metadata.

Retention: the last `keep` steps plus the one with the lowest metrics['valid_loss'] (the
VALID split's loss: the best is never chosen on the EVAL numbers reported)
(Levanter and big_vision keep "last K and best" the same way). Saves are synchronous:
a run killed right after save() returns has that step on disk. orbax writes a step
into a temporary folder and renames it when complete; leftover temporary folders from
a killed save are removed when the manager opens. A step that is present but damaged
(truncated file) raises on restore; restore_latest then walks back to the newest step
that restores and says what it skipped and why.
"""
from __future__ import annotations

import sys

import logging

import jax
import orbax.checkpoint as ocp
from absl import logging as absl_logging
from orbax.checkpoint import checkpoint_managers

from seqlab.infra import storage
from seqlab.infra.writer import WriteError


class _QuietOrbax(logging.Filter):
  """orbax logs dozens of INFO lines per save through absl (shown under launch.py's
  app.run); keep its warnings and errors, drop the rest."""

  def filter(self, record):
    if '/orbax/' not in record.pathname:
      return True
    # A read-only manager (seqlab.evaluate) is asked for on purpose: no warning about it;
    # a save's failure in orbax's thread is raised again in save(), which says it in one line.
    message = record.getMessage()
    return record.levelno >= logging.WARNING and not any(
        m in message for m in ('read only', 'read_only=True', 'raised an exception'))


absl_logging.get_absl_handler().addFilter(_QuietOrbax())

# tensorstore retries a failed bucket request 32 times with delays up to 32 s: a bucket
# that stops answering would hold a save for about 15 minutes with nothing said. Retry
# for about a minute instead, then save() fails with one line and the run can be resumed.
GCS_REQUEST_RETRIES = {'max_retries': 6, 'initial_delay': '1s', 'max_delay': '16s'}
try:
  from orbax.checkpoint._src.serialization import tensorstore_utils as _ts_utils
  for _context in (_ts_utils._BASE_TS_CONTEXT, _ts_utils._DEFAULT_OCDBT_TS_CONTEXT):
    _context.setdefault('gcs_request_retries', GCS_REQUEST_RETRIES)
except (ImportError, AttributeError):  # another orbax layout: keep tensorstore's default
  pass


def _selection_loss(metrics: dict) -> float:
  """The loss a checkpoint is ranked by: its VALID loss. Checkpoints saved before VALID
  was used (metrics {'eval_loss'}) rank last, so they are never chosen over one ranked
  on VALID."""
  return metrics['valid_loss'] if 'valid_loss' in metrics else float('inf')


def abstract(state):
  """Pytree of jax.ShapeDtypeStruct (with each leaf's sharding) describing `state`."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, 'sharding', None)),
      state)


class CheckpointManager:
  """Every `every` steps (should_save), at the end and on preemption: save(step, state)."""

  def __init__(self, directory: str, every: int, keep: int = 2, *, log=print,
               read_only: bool = False):
    """read_only: only restore (seqlab.evaluate): nothing in `directory` is created,
    cleaned up or deleted, so a run writing there at the same time is not disturbed."""
    self.directory = storage.abspath(directory)  # a local path or gs://bucket/path
    self.every = int(every)
    self._log = log
    policy = checkpoint_managers.AnyPreservationPolicy([
        checkpoint_managers.LatestN(n=max(int(keep), 1)),
        # reverse=True sorts by loss descending, so BestN's "last n" is the lowest loss.
        checkpoint_managers.BestN(get_metric_fn=_selection_loss, reverse=True, n=1,
                                  keep_checkpoints_without_metrics=False),
    ])
    # best_fn makes best_step() the lowest valid_loss; without it orbax returns the latest.
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy, best_fn=_selection_loss, best_mode='min',
        cleanup_tmp_directories=not read_only,
        enable_async_checkpointing=False, create=not read_only, read_only=read_only)
    if not read_only:
      self._remove_partial_saves()
    self._mgr = ocp.CheckpointManager(self.directory, options=options)

  def _remove_partial_saves(self) -> None:
    """Deletes folders a killed save left half-written (orbax names them
    '<step>.orbax-checkpoint-tmp-*'). orbax's own cleanup_tmp_directories did not
    remove them reliably (it depends on process-global state), so do it here."""
    if jax.process_index() != 0:
      return
    for name in storage.listdir(self.directory):
      if '.orbax-checkpoint-tmp' in name:
        storage.rmtree(storage.join(self.directory, name))
        self._log(f'removed a partially written checkpoint {name} in {self.directory}',
                  file=sys.stderr)

  def should_save(self, step: int) -> bool:
    return self.every > 0 and step % self.every == 0

  def all_steps(self) -> list[int]:
    return sorted(self._mgr.all_steps())

  def latest_step(self) -> int | None:
    steps = self.all_steps()
    return steps[-1] if steps else None

  def best_step(self) -> int | None:
    return self._mgr.best_step()

  def save(self, step: int, state, metrics: dict | None = None) -> None:
    """Writes `state` as checkpoint `step` (all processes must call this). Metrics
    (e.g. {'valid_loss': x}, finite floats) decide which checkpoint is the best."""
    if step in self._mgr.all_steps():
      return  # already saved (e.g. a final save right after a periodic one)
    metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
    try:
      self._mgr.save(int(step), args=ocp.args.StandardSave(state), metrics=metrics, force=True)
      self._mgr.wait_until_finished()
    except Exception as e:  # orbax, tensorstore and gcsfs raise many types (disk, network)
      why = ' '.join(str(e).split())[:200] or type(e).__name__
      raise WriteError(f'could not save checkpoint step {step} in {self.directory} '
                       f'({type(e).__name__}: {why}); the checkpoints saved before it are '
                       f'kept. Fix the cause and run the same command again to resume') from None

  def restore_latest(self, abstract_state):
    """(state, step) from the newest checkpoint that restores, or None when there is
    none. Damaged steps are skipped with a one-line note each."""
    self._mgr.reload()
    for step in reversed(self.all_steps()):
      try:
        state = self._mgr.restore(step, args=ocp.args.StandardRestore(abstract_state))
        return state, step
      except Exception as e:  # orbax raises many types for a damaged step
        why = ' '.join(str(e).split())[:200] or type(e).__name__
        self._log(f'checkpoint step {step} in {self.directory} does not restore '
                  f'({type(e).__name__}: {why}); trying an older one', file=sys.stderr)
    return None

  def restore(self, step: int, abstract_state):
    """The state saved at `step` (one of all_steps())."""
    return self._mgr.restore(int(step), args=ocp.args.StandardRestore(abstract_state))

  def close(self) -> None:
    self._mgr.close()
