"""The full report: run every study at one scale, redraw every figure from results
files, and write report.md and a self-contained report.html.

SECTIONS is the one table of studies in the report. Each entry names the experiment
config (run as `experiments/<config>.py:<scale>`) and a `draw` function
'module:function' taking the section's workdir and returning
  {'figures': [png/pdf paths], 'table': markdown or None,
   'claims': [(claim, verdict with numbers), ...]}
`draw` reads only results files, so `--config.redraw_only=True` rebuilds the whole
report in seconds without training anything.
"""
from __future__ import annotations

import base64
import datetime
import html
import importlib
import importlib.util
import math
import os
import platform
import re
import time
from collections import defaultdict

import numpy as np

from seqlab import plots_long_range, storage, writer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _call(spec: str, *args):
  module, fn = spec.split(':')
  return getattr(importlib.import_module(module), fn)(*args)


# ------------------------------------------------------------------ long-range claims
def _ratio_by(rows, task, model):
  """seq_len -> mean held-out loss / chance over seeds (finite runs only)."""
  out = defaultdict(list)
  for r in rows:
    if r['task'] == task and r['model'] == model and r.get('final_loss') is not None:
      out[r['seq_len']].append(r['final_loss'] / r['chance_loss'])
  return {t: float(np.mean(v)) for t, v in sorted(out.items())}


def _fmt_ratios(d):
  return ', '.join(f'T={t}: {v:.3g}' for t, v in d.items()) or 'no runs'


def draw_long_range(workdir: str) -> dict:
  d = plots_long_range.draw(workdir)
  rows = d['rows']
  claims = []
  if any(r['task'] == 'adding' for r in rows):
    rnn = _ratio_by(rows, 'adding', 'rnn')
    others = {m: _ratio_by(rows, 'adding', m) for m in ('lstm', 'gru', 'transformer')}
    rnn_at_chance = bool(rnn) and all(v > 0.5 for v in rnn.values())
    solvers = [m for m, d_ in others.items() if d_ and all(v < plots_long_range.SOLVED_FRACTION
                                                           for v in d_.values())]
    verdict = ('supported' if rnn_at_chance and len(solvers) >= 2 else
               'partly supported' if rnn_at_chance or solvers else 'not supported')
    claims.append((
        'Adding problem: a vanilla RNN stays near the 1/6 chance level as T grows, while '
        'gated cells and attention solve it.',
        f'{verdict}. Held-out MSE / chance: rnn {_fmt_ratios(rnn)}; ' + '; '.join(
            f'{m} {_fmt_ratios(v)}' for m, v in others.items() if v) +
        f'. Solved at every T (< {plots_long_range.SOLVED_FRACTION:g} x chance): '
        f'{", ".join(solvers) or "none"}.'))
  if any(r['task'] == 'copy' for r in rows):
    longest = max(r['seq_len'] for r in rows if r['task'] == 'copy')
    rec = {m: _ratio_by(rows, 'copy', m).get(longest) for m in ('rnn', 'lstm', 'gru')}
    rec = {m: v for m, v in rec.items() if v is not None}
    at_base = [m for m, v in rec.items() if v > 0.5]
    claims.append((
        f'Copy memory at the longest T ({longest}): RNN, LSTM and GRU sit at the memoryless '
        'baseline 10 ln 8/(T+20) within the step budget (Bai et al. 2018, Table 1).',
        f'{"supported" if len(at_base) == len(rec) and rec else "partly supported" if at_base else "not supported"}. '
        f'Held-out loss / baseline at T={longest}: ' +
        ', '.join(f'{m} {v:.3g}' for m, v in rec.items()) + '.'))
  if any(r['task'] == 'recall' for r in rows):
    ratios = {m: _ratio_by(rows, 'recall', m) for m in
              dict.fromkeys(r['model'] for r in rows if r['task'] == 'recall')}
    longest = max(r['seq_len'] for r in rows if r['task'] == 'recall')
    att = ratios.get('transformer', {}).get(longest)
    rec = {m: v.get(longest) for m, v in ratios.items() if m in ('rnn', 'lstm', 'gru')}
    ok = att is not None and att < plots_long_range.SOLVED_FRACTION and all(
        v > 0.5 for v in rec.values() if v is not None)
    claims.append((
        f'First-token recall at T={longest}: attention reads the first position directly '
        '(a path of length 1), while recurrent models must carry it through T steps.',
        f'{"supported" if ok else "not supported"}. Held-out loss / chance (ln 8): ' +
        ', '.join(f'{m} {v[longest]:.3g}' for m, v in ratios.items() if longest in v) + '.'))
  return {'figures': d['figures'], 'table': d['table'], 'claims': claims}


# ------------------------------------------------------------------ throughput claims
def draw_throughput(workdir: str) -> dict:
  from seqlab import plots_throughput
  rows = writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
  figures = plots_throughput.plot_all(workdir)
  ok = [r for r in rows if r.get('status') == 'ok']
  lines = ['| model | T | train tokens/s | infer tokens/s | step ms | compile s | peak MB |'
           ' vs flax LSTM | vs torch LSTM | vs torch SDPA |', '|' + '---|' * 10]
  for r in sorted(rows, key=lambda r: (r['seq_len'], r['model'])):
    if r.get('status') != 'ok':
      lines.append(f'| {r["model"]} | {r["seq_len"]} | {r.get("status")} | | | | | | | |')
      continue
    f = lambda k, spec='.3g': '' if r.get(k) is None else format(r[k], spec)
    mb = '' if r.get('peak_memory_bytes') is None else f'{r["peak_memory_bytes"] / 2**20:.0f}'
    lines.append(f'| {r["model"]} | {r["seq_len"]} | {f("tokens_per_s_train", ",.0f")} | '
                 f'{f("tokens_per_s_infer", ",.0f")} | {f("step_ms", ".1f")} | '
                 f'{f("compile_s", ".2f")} | '
                 f'{mb} | '
                 f'{f("ratio_train_vs_flax_lstm", ".2f")} | {f("ratio_train_vs_torch_lstm", ".2f")} | '
                 f'{f("ratio_train_vs_torch_sdpa", ".2f")} |')
  claims = []
  steps = plots_throughput._series(ok, 'step_ms')
  def slope(p):  # the long-T half when there are enough points, else all of them
    if len(p) >= 4:
      return plots_throughput.fitted_slope(p)
    return float(np.polyfit(np.log([t for t, _ in p]), np.log([y for _, y in p]), 1)[0])

  slopes = {m: slope(p) for m, p in steps.items() if len(p) >= 2}
  rec = {m: v for m, v in slopes.items() if m.split(':')[0] in ('rnn', 'lstm', 'gru')}
  att = {m: v for m, v in slopes.items() if m.startswith('attention')}
  if rec and att:
    claims.append((
        'A recurrent step costs O(T) (log-log slope about 1); attention costs O(T^2) at '
        'long T (slope tending to 2).',
        f'{"supported" if max(att.values()) > max(rec.values()) else "not supported"} over '
        f'T = {", ".join(str(t) for t in sorted({r["seq_len"] for r in ok}))}: slopes ' +
        ', '.join(f'{m} {v:.2f}' for m, v in {**rec, **att}.items()) +
        '.'))
  fused = {r['seq_len']: r.get('ratio_train_vs_flax_lstm') for r in ok
           if r['model'] == 'lstm:fused' and r.get('ratio_train_vs_flax_lstm')}
  if fused:
    claims.append((
        'seqlab\'s fused LSTM trains at least 1.35x as fast as flax\'s LSTM (issue target).',
        f'{"supported" if min(fused.values()) >= 1.35 else "not supported"}: fused / flax '
        'train tokens/s ' + ', '.join(f'T={t}: {v:.2f}x' for t, v in sorted(fused.items())) +
        ' (same run, same shapes).'))
  return {'figures': figures, 'table': '\n'.join(lines), 'claims': claims}


# ------------------------------------------------------------------- impulse claims
def draw_impulse(workdir: str) -> dict:
  from seqlab import impulse
  rows = writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
  grad = os.path.join(os.path.dirname(workdir), 'grad_flow', 'results.jsonl')
  figures = impulse.plot(rows, writer.read_jsonl(grad), os.path.join(workdir, 'figures'))
  t = max(r['seq_len'] for r in rows)
  end = {}
  for r in rows:
    if r['seq_len'] == t:
      end.setdefault(r['model'], []).append(r['impulse_response'][-1])
  txt = ', '.join(f'{m} {np.mean(v):.2g}' for m, v in end.items())
  return {'figures': figures, 'table': None, 'claims': [(
      'A recurrent network is an IIR filter: a unit impulse at t=0 echoes for ever, decaying '
      'as |lambda|^t for the linear recurrences (exact, tested) and as measured for the tanh '
      'cells; attention has no state to echo.',
      f'measured at initialisation, T={t}: response at t=T-1 relative to t=0: {txt}.')]}


# ---------------------------------------------------------------------- text claims
def draw_text(workdir: str) -> dict:
  rows = [r for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
          if r.get('final_loss') is not None]
  lines = ['| task | T | model | held-out | baseline | metric |', '|---|---|---|---|---|---|']
  better = []
  for r in rows:
    if r['task'] == 'charlm':
      got, base = r['final_loss'] / math.log(2), r['chance_loss'] / math.log(2)
      lines.append(f'| charlm | {r["seq_len"]} | {r["model"]} | {got:.3f} | {base:.3f} | '
                   'bits/char vs unigram entropy |')
      better.append((r, got < base))
    else:
      lines.append(f'| {r["task"]} | {r["seq_len"]} | {r["model"]} | '
                   f'{r["final_loss"]:.3f} | {r["chance_loss"]:.3f} | loss vs label entropy; '
                   f'accuracy {r.get("final_accuracy") or float("nan"):.3f} |')
      better.append((r, r['final_loss'] < r['chance_loss']))
  n_ok = sum(b for _, b in better)
  return {'figures': [], 'table': '\n'.join(lines), 'claims': [(
      'On real text (the Python standard library, offline) every model learns beyond the '
      'input-blind baseline within the step budget.',
      f'{n_ok} of {len(better)} points beat their baseline: ' + ', '.join(
          f'{r["model"]}/{r["task"]}/T={r["seq_len"]}' + ('' if b else ' (not)')
          for r, b in better) + '.')]}


# name, title, experiments config, draw function
SECTIONS = [
    ('grad_flow', 'Gradient flow', 'grad_flow', 'seqlab.plots_grad_flow:draw'),
    ('impulse', 'Impulse responses: the IIR-filter view', 'impulse', 'seqlab.report:draw_impulse'),
    ('long_range', 'Long-range capability', 'long_range', 'seqlab.report:draw_long_range'),
    ('throughput', 'Throughput', 'throughput', 'seqlab.report:draw_throughput'),
    ('text', 'Real text and ListOps', 'text', 'seqlab.report:draw_text'),
]


# ----------------------------------------------------------------------------- running
def load_experiment(name: str, scale: str):
  path = os.path.join(ROOT, 'experiments', f'{name}.py')
  spec = importlib.util.spec_from_file_location(f'_exp_{name}', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module.get_config(scale)


def command_for(name: str, scale: str, workdir: str) -> str:
  return (f'python launch.py --config=experiments/{name}.py:{scale} '
          f'--workdir={os.path.join(workdir, name)}')


def _count_rows(path: str) -> int:
  return len(writer.read_jsonl(path)) if storage.exists(path) else 0


def run(config, workdir: str) -> dict:
  """Runs (or, with redraw_only, only redraws) every section, then writes the report."""
  from seqlab import sweep
  sections = [s for s in SECTIONS if not config.sections or s[0] in config.sections]
  timings = {}
  if not config.redraw_only:
    for name, title, exp, _ in sections:
      sub = load_experiment(exp, config.scale)
      sweep.validate(sub)
      results = os.path.join(workdir, name, 'results.jsonl')
      before = _count_rows(results)
      t0 = time.time()
      print(f'== report: running {name} ({exp}.py:{config.scale}) ==', flush=True)
      sweep.study_fn(sub.get('study', 'train'))(sub, os.path.join(workdir, name))
      if _count_rows(results) != before:   # a study with nothing left to run keeps its time
        timings[name] = time.time() - t0
  # wall times survive a redraw: the last run's time per study, kept beside the report
  path = os.path.join(workdir, 'timings.json')
  timings = {**(writer.read_json(path) if storage.exists(path) else {}), **timings}
  if timings and writer.is_writer():
    writer.write_json(path, timings)
  drawn = []
  for name, title, exp, draw in sections:
    sub_dir = os.path.join(workdir, name)
    if not storage.exists(os.path.join(sub_dir, 'results.jsonl')):
      print(f'report: {name} has no results yet; skipped (run without redraw_only)')
      continue
    drawn.append((name, title, exp, _call(draw, sub_dir)))
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


def write_report(config, workdir, drawn, timings) -> tuple[str, str]:
  env = environment()
  md = [f'# seqlab report ({config.scale})', '',
        f'Generated {env["date"]} on {env["device"]}.', '',
        'Reproduce everything (runs only what is missing, then redraws):', '',
        '```bash', f'python launch.py --config=experiments/report.py:{config.scale} '
        f'--workdir={workdir}', '```', '',
        'Redraw figures and this report from the results files only (seconds):', '',
        '```bash', f'python launch.py --config=experiments/report.py:{config.scale} '
        f'--workdir={workdir} --config.redraw_only=True', '```', '']
  md += ['## Claims at a glance', '', '| study | claim | verdict |', '|---|---|---|']
  for name, title, exp, d in drawn:
    for claim, verdict in d['claims']:
      md.append(f'| {title} | {_cell(claim)} | {_cell(verdict)} |')
  md.append('')
  for name, title, exp, d in drawn:
    md += [f'## {title}', '', 'Command for this study alone:', '', '```bash',
           command_for(exp, config.scale, workdir), '```', '']
    if name in timings:
      md += [f'Ran in {timings[name]:.0f} s (wall) the last time it was run.', '']
    for claim, verdict in d['claims']:
      md += [f'- **Claim.** {claim}', f'  **Verdict.** {verdict}']
    md.append('')
    for fig in d['figures']:
      if fig.endswith('.png'):
        rel = os.path.relpath(fig, workdir)
        md += [f'![{title}]({rel})', '', f'*{title}: {_caption(fig, d)}* '
               f'([PDF]({os.path.splitext(rel)[0]}.pdf))', '']
    if d.get('table'):
      md += [d['table'], '']
  md += ['## Versions', '', '| package | version |', '|---|---|']
  md += [f'| {k} | {v} |' for k, v in env['versions'].items()]
  text = '\n'.join(md) + '\n'
  md_path = os.path.join(workdir, 'report.md')
  html_path = os.path.join(workdir, 'report.html')
  writer.write_text_atomic(md_path, text)
  writer.write_text_atomic(html_path, markdown_to_html(text, workdir))
  return md_path, html_path


def _cell(text: str) -> str:
  """A pipe-table cell: norms such as ||dL/dx_1|| must not end the cell."""
  return text.replace('|', '\\|')


def _caption(fig: str, d: dict) -> str:
  captions = d.get('captions', {})
  return captions.get(os.path.splitext(os.path.basename(fig))[0],
                      '; '.join(c for c, _ in d['claims'][:1]) or os.path.basename(fig))


def markdown_to_html(text: str, base: str) -> str:
  """A small converter for the subset report.md uses: headings, paragraphs, code
  blocks, pipe tables, bullet lists, bold/italic, and images embedded as data URIs
  (so report.html is one self-contained file)."""
  out, lines, i = [], text.splitlines(), 0

  def inline(s):
    s = html.escape(s)
    s = re.sub(r'\*\*(.+?)\*\*', r'<b>\1</b>', s)
    s = re.sub(r'(?<!\*)\*([^*]+?)\*(?!\*)', r'<i>\1</i>', s)
    s = re.sub(r'\[([^\]]+)\]\(([^)]+)\)', r'<a href="\2">\1</a>', s)
    return s

  while i < len(lines):
    line = lines[i]
    if line.startswith('```'):
      j = i + 1
      while j < len(lines) and not lines[j].startswith('```'):
        j += 1
      out.append('<pre><code>' + html.escape('\n'.join(lines[i + 1:j])) + '</code></pre>')
      i = j + 1
      continue
    m = re.match(r'^(#+) (.*)', line)
    if m:
      n = len(m.group(1))
      out.append(f'<h{n}>{inline(m.group(2))}</h{n}>')
    elif line.startswith('!['):
      m = re.match(r'!\[([^\]]*)\]\(([^)]+)\)', line)
      path = os.path.join(base, m.group(2))
      data = base64.b64encode(storage.read_bytes(path)).decode() if storage.exists(path) else ''
      out.append(f'<figure><img alt="{html.escape(m.group(1))}" '
                 f'src="data:image/png;base64,{data}"></figure>')
    elif line.startswith('|'):
      rows = []
      while i < len(lines) and lines[i].startswith('|'):
        cells_ = re.split(r'(?<!\\)\|', lines[i].strip()[1:-1])
        rows.append([c.strip().replace('\\|', '|') for c in cells_])
        i += 1
      body = ''.join('<tr>' + ''.join(f'<td>{inline(c)}</td>' for c in r) + '</tr>'
                     for r in rows[2:])
      out.append('<table><thead><tr>' + ''.join(f'<th>{inline(c)}</th>' for c in rows[0]) +
                 f'</tr></thead><tbody>{body}</tbody></table>')
      continue
    elif line.startswith('- ') or line.startswith('  **'):
      items = []
      while i < len(lines) and (lines[i].startswith('- ') or lines[i].startswith('  ')):
        if lines[i].startswith('- '):
          items.append(inline(lines[i][2:]))
        else:
          items[-1] += '<br>' + inline(lines[i].strip())
        i += 1
      out.append('<ul>' + ''.join(f'<li>{it}</li>' for it in items) + '</ul>')
      continue
    elif line.strip():
      out.append(f'<p>{inline(line)}</p>')
    i += 1
  style = ('body{font-family:Helvetica,Arial,sans-serif;max-width:900px;margin:2em auto;'
           'padding:0 1em;line-height:1.45;color:#222}img{max-width:100%;border:1px solid #eee}'
           'table{border-collapse:collapse;margin:1em 0;font-size:0.9em;width:100%}'
           'td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}'
           'th{background:#f3f3f3}pre{background:#f6f6f6;padding:0.7em;overflow-x:auto}'
           'figure{margin:1em 0}h2{border-bottom:1px solid #ddd;padding-bottom:0.2em}')
  return (f'<!doctype html><html><head><meta charset="utf-8"><title>seqlab report</title>'
          f'<style>{style}</style></head><body>' + '\n'.join(out) + '</body></html>\n')
