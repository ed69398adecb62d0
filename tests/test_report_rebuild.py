"""A report rebuilds from what is committed: redrawing a copy of a report folder (its
results files, timings and recorded environment) rewrites report.md byte for byte, and
the figures' bytes too (no creation date in a PNG or PDF)."""
import hashlib
import os
import shutil

import ml_collections

from seqlab import report
from seqlab.infra import writer
from tests.test_long_range import fake_sweep


def _digest(folder):
  out = {}
  for root, _, files in os.walk(folder):
    for f in files:
      if f.endswith(('.md', '.png', '.pdf')):
        p = os.path.join(root, f)
        out[os.path.relpath(p, folder)] = hashlib.sha256(open(p, 'rb').read()).hexdigest()
  return out


def test_redraw_of_a_copy_reproduces_report_md_byte_for_byte(tmp_path, monkeypatch):
  from seqlab.studies import long_range
  src = tmp_path / 'runs' / 'report'
  # a run: the study writes its results (as a real run would), the report records timings
  # and the environment it ran in
  monkeypatch.setattr(long_range, 'run', lambda config, workdir: fake_sweep(workdir))
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=False,
                                     sections=['long_range']))
  report.run(c, str(src))
  assert (src / report.META).exists() and (src / 'timings.json').exists()
  # only what a commit holds: results files, timings, the environment, figures, report
  dst = tmp_path / 'docs' / 'report'
  shutil.copytree(src, dst, ignore=shutil.ignore_patterns('*-s[0-9]', '.lock', 'jax_cache'))
  before = _digest(dst)
  monkeypatch.setattr(report, 'environment', lambda: {'versions': {}, 'device': 'another',
                                                      'date': 'another day'})
  with c.unlocked():
    c.redraw_only = True
  report.run(c, str(dst))
  after = _digest(dst)
  assert after == before, {k for k in before if before[k] != after.get(k)}
  md = (dst / 'report.md').read_text()
  assert '--workdir=' + str(src) in md          # the command that made it, not the copy's path


def test_every_figure_the_report_links_is_there(tmp_path):
  fake_sweep(str(tmp_path / 'long_range'))
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=True, sections=['long_range']))
  md = open(report.run(c, str(tmp_path))['report_md']).read()
  import re
  links = re.findall(r'\]\(([^)]+\.(?:png|pdf))\)', md)
  assert links and all(os.path.exists(tmp_path / l) for l in links), links
  assert writer.read_json(str(tmp_path / report.META))['workdir'] == str(tmp_path)
