"""Stopping a run without losing it: SIGTERM (the preemption notice on TPU VMs and most
schedulers) and Ctrl-C (SIGINT) only set a flag; the training loop saves a checkpoint
at the next step boundary and exits with the shell's status for the signal (143 after
SIGTERM, 130 after Ctrl-C: 128 + the signal's number), so a script can tell a run that
was stopped from one that finished. A second Ctrl-C stops at once (KeyboardInterrupt),
keeping the checkpoints already saved.
"""
from __future__ import annotations

import signal
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Preemption:
  """with Preemption() as p: ... if p.requested: save, then p.exit_status() ..."""

  def __init__(self, notice=print):
    self._notice = notice   # says, once, that a Ctrl-C was heard and what happens next

  def __enter__(self):
    self.requested, self.signum, self._old = False, None, {}
    if threading.current_thread() is threading.main_thread():
      for s in SIGNALS:
        self._old[s] = signal.signal(s, self._request)
    return self

  def _request(self, signum, frame):
    if signum == signal.SIGINT and self.requested:
      signal.signal(signal.SIGINT, signal.default_int_handler)
      raise KeyboardInterrupt  # the second Ctrl-C: stop now
    self.requested, self.signum = True, signum
    if signum == signal.SIGINT:
      self._notice('Ctrl-C: saving a checkpoint at the end of this step (Ctrl-C again stops '
                   'at once, losing the steps since the last checkpoint)', flush=True)

  @property
  def name(self) -> str:
    return 'Ctrl-C' if self.signum == signal.SIGINT else 'SIGTERM'

  def exit_status(self) -> int:
    """The shell's status for the signal, 128 + its number, after the checkpoint is
    saved: 143 after SIGTERM (a preemption: not finished, so `a && b` stops and a
    scheduler or the TPU launcher restarts the same command, which resumes), 130 after
    Ctrl-C."""
    return 128 + int(self.signum or signal.SIGTERM)

  def __exit__(self, *exc):
    for s, old in self._old.items():
      signal.signal(s, old)
