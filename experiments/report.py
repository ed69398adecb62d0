"""The full report: every study at one scale, then every figure and table redrawn
from results files into report.md and a self-contained report.html.

  python launch.py --config=experiments/report.py:quick     # CPU: 55 min, fresh 2-core clone (cores shared)
  python launch.py --config=experiments/report.py:full      # GPU/TPU scale
  python launch.py --config=experiments/report.py:gpu       # the device script (:tpu on a TPU VM)
  python launch.py --config=experiments/report.py:quick --config.redraw_only=True
  python launch.py --config=experiments/report.py:quick \
      --sections=grad_flow,impulse,long_range,throughput,text   # the seed's claims: 42 min (long_range 36)

Points already done are skipped, so an interrupted report resumes. Output:
runs/report/report.md, runs/report/report.html, and one subdirectory per study.
"""
import ml_collections


def get_config(arg: str = 'quick'):
  if arg not in ('quick', 'full', 'gpu', 'tpu'):
    raise ValueError(f'unknown report scale {arg!r}; allowed: quick, full, gpu, tpu')
  c = ml_collections.ConfigDict()
  c.study = 'report'
  c.scale = arg
  c.redraw_only = False
  c.sections = ml_collections.FieldReference([], field_type=list)  # [] = every section
  # study -> the variant of its config this scale runs (default: the scale itself)
  c.study_scales = ml_collections.ConfigDict()
  c.study_scales.paper = 'cpu' if arg == 'quick' else arg
  if arg == 'quick':   # the published-table study runs ~40 min on a CPU: on its own,
    # python launch.py --config=experiments/paper.py:cpu --workdir=runs/report/paper;
    # the report then draws its section too (a study with results in the workdir is drawn)
    c.sections = ['grad_flow', 'impulse', 'long_range', 'throughput', 'text', 'generation',
                  'length_gen', 'recall_capacity']
  if arg in ('gpu', 'tpu'):   # the device script: kernels checked and timed first, then
    # every training study's :quick config once on the device
    c.sections = ['throughput', 'grad_flow', 'impulse', 'long_range', 'text', 'generation',
                  'length_gen', 'recall_capacity']
    c.study_scales.update({name: 'quick' for name in c.sections}, throughput=arg)
  return c
