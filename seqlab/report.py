"""The full report: run every study in seqlab.studies.STUDIES at one scale, redraw every
figure from the results files, and write report.md and a self-contained report.html.

Each study is run as `experiments/<NAME>.py:<scale>` into <workdir>/<NAME>; its section
is its figures, table and claims (seqlab/studies/study.py), all drawn from results
files, so `--config.redraw_only=True` rebuilds the report in seconds. A study added to
STUDIES gets its section with no edit here.
"""
from __future__ import annotations

import base64
import datetime
import importlib
import os
import platform
import re
import time

from seqlab import config as seqlab_config
from seqlab import studies, sweep
from seqlab.infra import storage, writer

NAME = 'report'


def _sections(config) -> list:
  """The studies to run, in config.sections' order (every study when it is empty)."""
  if not config.sections:
    return list(studies.STUDIES.values())
  return [studies.STUDIES[n] for n in config.sections if n in studies.STUDIES]


def _variant(config, name: str) -> str:
  """The variant of experiments/<name>.py this report runs."""
  return config.get('study_scales', {}).get(name, config.scale)


def validate(config) -> None:
  """The sections named exist; with anything to run, each study's own config checks."""
  unknown = [s for s in config.sections if s not in studies.STUDIES]
  if unknown:
    raise sweep.ConfigError(f'report sections {", ".join(unknown)} unknown; allowed: '
                            f'{", ".join(studies.STUDIES)}')
  if not config.redraw_only:
    for s in _sections(config):
      s.validate(seqlab_config.load(f'{s.NAME}:{_variant(config, s.NAME)}'))


def validate_workdir(config, workdir: str) -> None:
  """With redraw_only, some section must have results in workdir (checked before the
  launcher writes anything there)."""
  if config.redraw_only and not any(s.rows(os.path.join(workdir, s.NAME))
                                    for s in _sections(config)):
    raise sweep.ConfigError(f'nothing to report: no study in {workdir} has results; run '
                            f'without --config.redraw_only=True first')


def command_for(name: str, scale: str, workdir: str) -> str:
  return (f'python launch.py --config=experiments/{name}.py:{scale} '
          f'--workdir={os.path.join(workdir, name)}')


def _count_rows(path: str) -> int:
  return len(writer.read_jsonl(path)) if storage.exists(path) else 0


def run(config, workdir: str) -> dict:
  """Runs (or, with redraw_only, only redraws) every section, then writes the report."""
  sections = _sections(config)
  timings = {}
  if not config.redraw_only:
    for s in sections:
      sub = seqlab_config.load(f'{s.NAME}:{_variant(config, s.NAME)}')
      s.validate(sub)
      results = os.path.join(workdir, s.NAME, 'results.jsonl')
      before = _count_rows(results)
      t0 = time.time()
      print(f'== report: running {s.NAME} ({s.NAME}.py:{_variant(config, s.NAME)}) ==', flush=True)
      s.run(sub, os.path.join(workdir, s.NAME))
      if _count_rows(results) != before:   # a study with nothing left to run keeps its time
        timings[s.NAME] = time.time() - t0
  # wall times survive a redraw: the last run's time per study, kept beside the report
  path = os.path.join(workdir, 'timings.json')
  timings = {**(writer.read_json(path) if storage.exists(path) else {}), **timings}
  if timings and writer.is_writer():
    writer.write_json(path, timings)
  drawn = []
  # A study outside the sections is drawn too when its results are in the workdir (e.g.
  # paper, run on its own into <workdir>/paper), in STUDIES order after the sections.
  extra = [s for s in studies.STUDIES.values()
           if s not in sections and s.rows(os.path.join(workdir, s.NAME))]
  for s in sections + extra:
    sub_dir = os.path.join(workdir, s.NAME)
    rows = s.rows(sub_dir)
    if not rows:
      print(f'report: {s.NAME} has no results yet; skipped (run without redraw_only)')
      continue
    drawn.append((s, s.draw(sub_dir), s.table(rows), s.claims(rows)))
  if not drawn:
    raise sweep.ConfigError(f'nothing to report: no study in {workdir} has results; run '
                            f'without --config.redraw_only=True first')
  paths = write_report(config, workdir, drawn, timings)
  print(f'report: {paths[0]}\n        {paths[1]}')
  return {'report_md': paths[0], 'report_html': paths[1]}


# ------------------------------------------------------------------------------ writing
def environment() -> dict:
  import jax
  versions = {'python': platform.python_version()}
  for pkg in ('jax', 'jaxlib', 'flax', 'optax', 'orbax.checkpoint', 'datasets', 'numpy',
              'matplotlib'):
    try:
      versions[pkg] = importlib.import_module(pkg).__version__
    except Exception:  # an optional package missing is reported, not fatal
      versions[pkg] = 'not installed'
  dev = jax.devices()[0]
  device = f'{jax.device_count()} x {dev.platform} ({getattr(dev, "device_kind", "?")})'
  if dev.platform == 'cpu':
    device += f', {os.cpu_count()} CPU cores, {platform.processor() or platform.machine()}'
  return {'versions': versions, 'device': device,
          'date': datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}


def _cell(text: str) -> str:
  """A pipe-table cell: norms such as ||dL/dx_1|| must not end the cell."""
  return text.replace('|', '\\|')


def write_report(config, workdir, drawn, timings) -> tuple[str, str]:
  env = environment()
  cmd = f'python launch.py --config=experiments/report.py:{config.scale} --workdir={workdir}'
  md = [f'# seqlab report ({config.scale})', '',
        f'Generated {env["date"]} on {env["device"]}.', '',
        'Reproduce everything (runs only what is missing, then redraws):', '',
        '```bash', cmd, '```', '',
        'Redraw figures and this report from the results files only (seconds):', '',
        '```bash', f'{cmd} --config.redraw_only=True', '```', '',
        '## Claims at a glance', '', '| study | claim | verdict |', '|---|---|---|']
  for s, _, _, claims in drawn:
    md += [f'| {s.TITLE} | {_cell(c.text)} | {_cell(c.line())} |' for c in claims]
  md.append('')
  for s, figures, table, claims in drawn:
    md += [f'## {s.TITLE}', '', 'Command for this study alone:', '', '```bash',
           command_for(s.NAME, _variant(config, s.NAME), workdir), '```', '']
    if s.NAME in timings:
      md += [f'Ran in {timings[s.NAME]:.0f} s (wall) the last time it was run.', '']
    for c in claims:
      md += [f'- **Claim.** {c.text}  ', f'  **Verdict.** {c.line()}']
    md.append('')
    for fig in figures:
      if fig.endswith('.png'):
        rel = os.path.relpath(fig, workdir)
        stem = os.path.splitext(os.path.basename(fig))[0]
        caption = s.CAPTIONS.get(stem, stem)
        md += [f'![{s.TITLE}]({rel})', '', f'*{caption}* ([PDF]({os.path.splitext(rel)[0]}.pdf))',
               '']
    if table:
      md += [table, '']
  md += ['## Versions', '', '| package | version |', '|---|---|']
  md += [f'| {k} | {v} |' for k, v in env['versions'].items()]
  text = '\n'.join(md) + '\n'
  md_path = os.path.join(workdir, 'report.md')
  html_path = os.path.join(workdir, 'report.html')
  writer.write_text_atomic(md_path, text)
  writer.write_text_atomic(html_path, to_html(text, workdir))
  return md_path, html_path


STYLE = ('body{font-family:Helvetica,Arial,sans-serif;max-width:900px;margin:2em auto;'
         'padding:0 1em;line-height:1.45;color:#222}img{max-width:100%;border:1px solid #eee}'
         'table{border-collapse:collapse;margin:1em 0;font-size:0.9em;width:100%}'
         'td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}'
         'th{background:#f3f3f3}pre{background:#f6f6f6;padding:0.7em;overflow-x:auto}'
         'h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}')


def to_html(text: str, base: str) -> str:
  """report.md as one self-contained HTML page: Python-Markdown (tables, fenced code),
  with every local PNG embedded as a data URI."""
  import markdown
  body = markdown.markdown(text, extensions=['tables', 'fenced_code'])

  def embed(m):
    path = os.path.join(base, m.group(1))
    if not storage.exists(path):
      return m.group(0)
    return f'src="data:image/png;base64,{base64.b64encode(storage.read_bytes(path)).decode()}"'

  body = re.sub(r'src="([^":]+\.png)"', embed, body)
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>seqlab report</title>'
          f'<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n')
