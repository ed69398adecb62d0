"""The full report: every study at one scale, then every figure and table redrawn
from results files into report.md and a self-contained report.html.

  python launch.py --config=experiments/report.py:quick     # CPU, under 15 minutes
  python launch.py --config=experiments/report.py:full      # GPU/TPU scale
  python launch.py --config=experiments/report.py:quick --config.redraw_only=True

Points already done are skipped, so an interrupted report resumes. Output:
runs/report/report.md, runs/report/report.html, and one subdirectory per study.
"""
import ml_collections


def get_config(arg: str = 'quick'):
  if arg not in ('quick', 'full'):
    raise ValueError(f'unknown report scale {arg!r}; allowed: quick, full')
  c = ml_collections.ConfigDict()
  c.study = 'report'
  c.scale = arg
  c.redraw_only = False
  c.sections = ml_collections.FieldReference([], field_type=list)  # [] = every section
  return c
