"""The training loop's progress line: time left from steady-state steps only, and the
compile time (the first step, which traces and compiles the step, run to its end) shown
once on its own, so neither the time left nor tokens/s counts compilation."""
from __future__ import annotations

import contextlib
import math
import time


def fmt_time(s: float) -> str:
  s = int(max(s, 0))
  return f'{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}'


class Progress:
  """compiled() after the first step has run; measured(done) after blocking on step
  `done` (steps completed in total); tokens_per_s and left_s from the steps since the
  compiled one, over the whole steady state (an average, so it does not swing), less
  the time spent in paused() blocks (checkpoint saves). The time left counts steps
  only, not the saves still to come."""

  def __init__(self, total_steps: int, first_step: int, tokens_per_step: int, say):
    self.total, self.first = total_steps, first_step
    self.tokens_per_step, self._say = tokens_per_step, say
    self.t_start = time.time()
    self._t_steady = None
    self._paused_s = 0.0   # time in checkpoint saves and their evaluations: not steps
    self.steady_steps, self.steady_s = 0, 0.0   # what tokens_per_s is measured over
    self.compile_s = None
    self.tokens_per_s = float('nan')
    self._steps_per_s = float('nan')

  def compiled(self) -> None:
    now = time.time()
    self.compile_s = now - self.t_start
    self._t_steady = now
    self._say(f'  compiled and ran step {self.first + 1} in {self.compile_s:.1f}s '
              f'(not counted in tok/s or time left)', flush=True)

  def measured(self, done: int) -> None:
    steady = done - self.first - 1  # steps run after the compiled one
    if self._t_steady is None or steady <= 0:
      return
    dt = time.time() - self._t_steady - self._paused_s
    if dt > 0:
      self._steps_per_s = steady / dt
      self.tokens_per_s = self._steps_per_s * self.tokens_per_step
      self.steady_steps, self.steady_s = steady, dt

  @contextlib.contextmanager
  def paused(self):
    """Time spent inside (a checkpoint save) is not counted as training steps."""
    t0 = time.time()
    try:
      yield
    finally:
      self._paused_s += time.time() - t0

  def left_s(self, done: int) -> float:
    return (self.total - done) / self._steps_per_s if self._steps_per_s > 0 else float('nan')

  def line(self, done: int) -> str:
    tok = '-' if not math.isfinite(self.tokens_per_s) else f'{self.tokens_per_s:,.0f}'
    left = self.left_s(done)
    return (f'{tok} tok/s  elapsed {fmt_time(time.time() - self.t_start)} left '
            f'{fmt_time(left) if math.isfinite(left) else "-"}')
