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
  ran = []   # the studies that measured something new in this run
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
        ran.append(s.NAME)
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
  paths = write_report(config, workdir, drawn, timings, meta(workdir, ran=bool(ran)))
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
  """A pipe-table cell: norms such as ||dL/dx_1|| must not end the cell, nor a newline
  from a results row end the table's row. (HTML in it is made harmless by to_html.)"""
  return ' '.join(str(text).replace('|', '\\|').splitlines())


META = 'report_meta.json'   # the environment the studies last ran in, kept for redraws


def meta(workdir: str, ran: bool) -> dict:
  """The date, device, versions and workdir the report states: measured now when any
  study ran (or none is recorded), else the recorded ones, so a redraw from the results
  files rewrites report.md byte for byte."""
  path = os.path.join(workdir, META)
  if not ran and storage.exists(path):
    return writer.read_json(path)
  env = dict(environment(), workdir=workdir)
  if writer.is_writer():
    writer.write_json(path, env)
  return env


def _part_rows(c) -> list[str]:
  """A claim's parts as a table: the number with its interval, the rule, the outcome."""
  lines = ['| part | estimate [95% CI] | holds when | outcome |', '|---|---|---|---|']
  for p in c.parts:
    outcome = f'**{p.outcome}**' + (f': {p.note}' if p.note else '')
    lines.append(f'| {_cell(p.name)} | {_cell(p.estimate or "-")} | {_cell(p.rule or "-")} | '
                 f'{_cell(outcome)} |')
  return lines


def write_report(config, workdir, drawn, timings, env=None) -> tuple[str, str]:
  env = env or meta(workdir, ran=False)
  cmd = (f'python launch.py --config=experiments/report.py:{config.scale} '
         f'--workdir={env.get("workdir", workdir)}')
  md = [f'# seqlab report ({config.scale})', '',
        f'Generated {env["date"]} on {env["device"]}.', '',
        'Reproduce everything (runs only what is missing, then redraws):', '',
        '```bash', cmd, '```', '',
        'Redraw figures and this report from the results files only (seconds):', '',
        '```bash', f'{cmd} --config.redraw_only=True', '```', '',
        'Every verdict is computed from the numbers: each part of a claim is a number with '
        'its 95% interval (over seeds and held-out examples, seqlab/studies/stats.py) tested '
        'against a stated threshold, and **holds** (the whole interval on the claimed side), '
        '**fails** (the whole interval on the other side) or is **undecided** (the interval '
        'straddles it: the part says about how much more data would decide it). A claim is '
        '*supported* only when every part holds; *partly supported* when some hold and some '
        'fail; *not supported* when parts fail and none holds; *undecided* when none fails '
        'but some are undecided; *measured* states numbers without a test.', '',
        '## Claims at a glance', '', '| study | claim | verdict | parts |', '|---|---|---|---|']
  for s, _, _, claims in drawn:
    md += [f'| {_cell(s.TITLE)} | {_cell(c.text)} | **{c.verdict}** | '
           f'{_cell(c.counts() if c.parts else "-")} |' for c in claims]
  md.append('')
  for s, figures, table, claims in drawn:
    md += [f'## {s.TITLE}', '', 'Command for this study alone:', '', '```bash',
           command_for(s.NAME, _variant(config, s.NAME), env.get('workdir', workdir)), '```', '']
    if s.NAME in timings:
      md += [f'Ran in {timings[s.NAME]:.0f} s (wall) the last time it was run.', '']
    for c in claims:
      md += [f'**Claim.** {_cell(c.text)}', '',
             f'**Verdict: {c.verdict}**' + (f' ({c.counts()})' if c.parts else '') +
             f'. {_cell(c.evidence)}', '']
      if c.parts:
        md += _part_rows(c) + ['']
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
  md += [f'| {k} | {v} |' for k, v in sorted(env['versions'].items())]   # as report_meta.json
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


# The HTML a report may hold: what Python-Markdown makes of tables, code and figures.
HTML_TAGS = {'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'p', 'br', 'hr', 'em', 'strong', 'code',
             'pre', 'blockquote', 'ul', 'ol', 'li', 'a', 'img', 'table', 'thead', 'tbody',
             'tr', 'th', 'td'}
HTML_ATTRIBUTES = {'a': {'href', 'title'}, 'img': {'src', 'alt', 'title'},
                   'code': {'class'}, 'th': {'align'}, 'td': {'align'}}


def to_html(text: str, base: str) -> str:
  """report.md as one self-contained HTML page: Python-Markdown (tables, fenced code),
  with every PNG inside the workdir `base` embedded as a data URI.

  A report is shared, and its text comes from results rows and configs (a model name,
  a claim, a note), so nothing in it is trusted as markup: Markdown's raw-HTML passes
  are off (a '<script>' in a model name is shown as text), the HTML is then sanitised
  by nh3 (ammonia: only HTML_TAGS and HTML_ATTRIBUTES, links only to http(s), mailto
  or relative URLs), and an image is embedded only when its real path (symbolic links
  resolved) is inside `base`; one named by an absolute or ../ path loses its src."""
  import html

  import markdown
  import nh3

  class NoRawHtml(markdown.Extension):
    def extendMarkdown(self, md):
      md.preprocessors.deregister('html_block')
      md.inlinePatterns.deregister('html')

  body = markdown.markdown(text, extensions=['tables', 'fenced_code', NoRawHtml()])
  body = nh3.clean(body, tags=HTML_TAGS, attributes=HTML_ATTRIBUTES,
                   url_schemes={'http', 'https', 'mailto'})

  def embed(m):
    path = _inside(base, html.unescape(m.group(1)))
    if path is None:
      return 'src=""'
    if not storage.exists(path):
      return m.group(0)
    return f'src="data:image/png;base64,{base64.b64encode(storage.read_bytes(path)).decode()}"'

  body = re.sub(r'src="([^"]*\.png)"', embed, body)
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>seqlab report</title>'
          f'<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n')


def _inside(base: str, rel: str) -> str | None:
  """The path of the report's image `rel` when it lies inside the workdir `base`
  (relative, no scheme, and its real path under base's), else None."""
  import posixpath
  if not rel or os.path.isabs(rel) or ':' in rel or '\\' in rel or '\0' in rel:
    return None
  if storage.is_url(base):
    rel = posixpath.normpath(rel)
    return None if rel == '..' or rel.startswith('../') else f'{base.rstrip("/")}/{rel}'
  top = os.path.realpath(base)
  real = os.path.realpath(os.path.join(top, rel))
  return real if real.startswith(top + os.sep) else None
