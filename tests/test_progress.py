"""The progress line: compile time once, on its own; tokens/s and time left from
steady-state steps only (not the compile, not checkpoint saves)."""
from seqlab import progress as progress_lib


def test_compile_and_saves_are_not_steps(monkeypatch):
  now = [100.0]
  monkeypatch.setattr(progress_lib.time, 'time', lambda: now[0])
  said = []
  p = progress_lib.Progress(1000, 0, tokens_per_step=50, say=lambda s, **k: said.append(s))
  now[0] += 30.0                       # tracing and compiling step 1
  p.compiled()
  assert p.compile_s == 30.0 and said == [
      '  compiled and ran step 1 in 30.0s (not counted in tok/s or time left)']
  now[0] += 1.0                        # steps 2..101: 100 steps per second
  p.measured(101)
  with p.paused():                     # a checkpoint save
    now[0] += 5.0
  now[0] += 1.0                        # steps 102..201
  p.measured(201)
  assert p.tokens_per_s == 100 * 50
  assert p.left_s(201) == (1000 - 201) / 100
  assert '5,000 tok/s' in p.line(201) and 'left 0:00:07' in p.line(201)


def test_no_steady_step_yet_shows_a_dash():
  p = progress_lib.Progress(10, 0, tokens_per_step=5, say=lambda *a, **k: None)
  p.compiled()
  p.measured(1)
  assert p.line(1).startswith('- tok/s') and p.line(1).endswith('left -')
