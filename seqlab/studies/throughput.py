"""The throughput study: train-step and inference tokens/s, step time, compile time
and peak memory of one layer of each model against sequence length T, with the
baselines measured in the same run (seqlab.measure.benchmark says how).

Figures, read only from workdir/results.jsonl:
throughput_a: tokens/s against T (log-log), train and inference, a column per family.
throughput_b: train step time against T with the fitted log-log slope per model
              (about 1 for recurrences, tending to 2 for attention at long T).
throughput_c: peak memory (XLA memory analysis of the train step) against T.
The crossover T where causal attention becomes slower than the LSTM is marked on a and b.
"""
from __future__ import annotations

import json
import math
import os
import sys

import jax
import numpy as np

from seqlab import models, sweep
from seqlab.infra import storage, writer
from seqlab.measure import benchmark, torch_baselines
from seqlab.studies import plot_style, stats, study

NAME = 'throughput'
TITLE = 'Throughput'
CAPTIONS = {
    'throughput_a': 'Train (top) and inference (bottom) tokens/s against T, one layer at '
                    'batch 32 and hidden 256: one column per family beside its baselines '
                    '(dotted, grey); solid: the reference kernel, dashed and dash-dot: the '
                    'others.',
    'throughput_b': 'Train step time against T with each model\'s fitted log-log slope.',
    'throughput_c': 'Compiled peak memory of the train step against T.',
}
# Layers a throughput sweep may name besides the model families ('attention' is one
# attention layer; the rest are the baselines).
LAYERS = ('attention', 'transformer') + benchmark.BASELINES


def validate(config) -> None:
  """Every name is LAYER[:KERNEL][@N] with a known layer and kernel; torch baselines
  take no @N; the batch splits evenly."""
  bc = benchmark.BenchConfig(**config.bench.to_dict())
  if bc.dtype not in models.DTYPES:
    raise sweep.ConfigError(f'bench.dtype={bc.dtype!r}; allowed: {", ".join(models.DTYPES)}')
  allowed = list(models.MODELS) + [l for l in LAYERS if l not in models.MODELS]
  for n in config.sweep.models:
    try:
      layer, devices = benchmark.split_devices(benchmark.split_dtype(n)[0])
    except ValueError as e:
      raise sweep.ConfigError(str(e)) from None
    base, kernel = models.split_name(layer)
    if base not in allowed:
      raise sweep.ConfigError(f'unknown throughput model {n!r}; allowed: {", ".join(allowed)} '
                              f'(each as NAME[:KERNEL][@DEVICES], e.g. lstm:fused, '
                              f'attention:blocked@2)')
    if base not in benchmark.BASELINES:
      try:
        models.resolve_kernel('transformer' if base == 'attention' else base, kernel)
      except ValueError as e:
        raise sweep.ConfigError(f'{n!r}: {e}') from None
    elif kernel != 'auto':
      raise sweep.ConfigError(f'{n!r}: a baseline has no kernels; use {base}')
    if devices > 1 and base.startswith('torch_'):
      raise sweep.ConfigError(f'model {n!r}: torch baselines use every core through their '
                              f'own threads and take no @N')
    if bc.batch % devices:
      raise sweep.ConfigError(f'model {n!r} splits bench.batch={bc.batch} over {devices} '
                              f'devices; use a batch that is a multiple of {devices}')


def run(config, workdir: str) -> list[dict]:
  """The throughput study: every model at every T of config.sweep, written per T
  (so ratios to the baselines come from the same run); finished T are skipped. A
  model that times out or runs out of memory at some T is not tried at longer T."""
  validate(config)
  bc = benchmark.BenchConfig(**config.bench.to_dict())
  names = list(config.sweep.models)
  too_few = [n for n in names
             if benchmark.split_devices(benchmark.split_dtype(n)[0])[1] > jax.device_count()]
  if too_few:
    names = [n for n in names if n not in too_few]
    print(f'{", ".join(too_few)} skipped: more devices than the {jax.device_count()} '
          f'{jax.devices()[0].platform} device(s) here (on a CPU, '
          f'--config.cpu_devices=N makes N)')
  if not torch_baselines.torch_available():
    names = [n for n in names if not n.startswith('torch_')]
    print('torch is not importable: torch baselines skipped (pip install -r '
          'requirements-bench.txt to add them)')
  storage.makedirs(workdir)
  if bc.check_backends:
    names = check_backends(names, bc, workdir)
  path = os.path.join(workdir, 'results.jsonl')
  old = writer.read_jsonl(path)
  done = {(r['model'], r['seq_len']) for r in old}
  given_up = {r['model'] for r in old if r.get('status') != 'ok'}
  ceilings = benchmark.matmul_ceilings()
  print(f'matmul ceiling on {jax.devices()[0].device_kind}: '
        f'{ceilings["ceiling_flops_per_s"] / 1e9:.1f} GFLOP/s for 1024^3 '
        f'({ceilings["ceiling_cores_busy"]:.2f} cores busy), '
        f'{ceilings["batched_ceiling_flops_per_s"] / 1e9:.1f} GFLOP/s batched 128 x (128x64x128) '
        f'({ceilings["batched_ceiling_cores_busy"]:.2f} cores busy)')
  if nproc := benchmark.nproc_env():
    print(f'NPROC={nproc} is set: XLA:CPU sizes its thread pool by it (the 1024^3 '
          f'product kept {ceilings["ceiling_cores_busy"]:.2f} of {benchmark.usable_cores()} cores busy); '
          f'unset it for an all-core run')
  last_ok = {}   # model -> (seq_len, step_s) of its longest finished point
  for r in old:
    if r.get('status') == 'ok' and r['seq_len'] >= last_ok.get(r['model'], (0, 0))[0]:
      last_ok[r['model']] = (r['seq_len'], r['step_ms'] / 1e3)
  for seq_len in sorted(int(t) for t in config.sweep.seq_lens):
    todo = [n for n in names if (n, seq_len) not in done and n not in given_up]
    rows = []
    for n in todo:
      r = (benchmark.predicted_timeout(n, bc, seq_len, last_ok.get(n)) or
           benchmark.measure(n, bc, seq_len, ceilings))
      if r['status'] == 'ok':
        last_ok[n] = (seq_len, r['step_ms'] / 1e3)
      else:
        given_up.add(n)
      print(f'T={seq_len:>6} {n:<20} {r["status"]:<8} ' + (
          f'train {r["tokens_per_s_train"]:>10,.0f} tok/s  infer {r["tokens_per_s_infer"]:>10,.0f}'
          f' tok/s  compile {r["compile_s"]:.2f} s' if r['status'] == 'ok' else r['error']),
          flush=True)
      rows.append(r)
    for r in benchmark.add_baseline_ratios(rows):
      writer.append_jsonl_atomic(path, r)
  return study.finish(sys.modules[__name__], workdir)


def _kernel_of(name: str, default_dtype: str) -> tuple[str, str, str]:
  """'attention:cudnn@2/bfloat16' -> ('transformer', 'cudnn', 'bfloat16'): the family,
  kernel and dtype a throughput name runs."""
  layer, dtype = benchmark.split_dtype(name, default_dtype)
  base, kernel = models.split_name(benchmark.split_devices(layer)[0])
  family = 'transformer' if base == 'attention' else base
  return family, (models.resolve_kernel(family, kernel) if family in models.KERNELS else ''), dtype


def check_backends(names: list[str], bc, workdir: str) -> list[str]:
  """Every kernel against its reference on this device, in each dtype of the sweep
  (seqlab.measure.backends), written to backends.jsonl and backends.md; returns `names`
  without the layers whose kernel disagrees (each said in one line)."""
  from seqlab.measure import backends
  dtypes = sorted({_kernel_of(n, bc.dtype)[2] for n in names})
  rows = [r for dt in dtypes for r in backends.check(dt, hidden=min(bc.hidden, 64))]
  if writer.is_writer():
    writer.write_text_atomic(os.path.join(workdir, 'backends.md'), backends.table(rows) + '\n')
    writer.write_text_atomic(os.path.join(workdir, 'backends.jsonl'),
                             ''.join(json.dumps(r) + '\n' for r in rows))
  print(backends.table(rows), flush=True)
  bad = {(r['model'], r['kernel'], r['dtype']) for r in rows if not r['ok']}
  dropped = [n for n in names if _kernel_of(n, bc.dtype) in bad]
  if dropped:
    print(f'not timed, their kernel disagrees with its reference here: {", ".join(dropped)}')
  return [n for n in names if n not in dropped]


def rows(workdir: str) -> list[dict]:
  return writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))


def table(rows) -> str:
  """One line per (T, model): tokens/s, step and compile time, peak memory, and the
  train tokens/s ratio to every baseline measured in the same run."""
  ratio_keys = [f'ratio_train_vs_{b}' for b in benchmark.BASELINES
                if any(f'ratio_train_vs_{b}' in r for r in rows)]
  # on a chip of roofline.CHIPS: the roofline bound of the step and measured / bound
  predicted = any(r.get('predicted_step_ms') for r in rows)
  extra = ['roofline ms', 'measured / roofline'] if predicted else []
  lines = ['| model | T | train tokens/s | infer tokens/s | step ms | compile s | peak MiB | ' +
           ' | '.join([f'vs {k[len("ratio_train_vs_"):]}' for k in ratio_keys] + extra) + ' |',
           '|' + '---|' * (7 + len(ratio_keys) + len(extra))]
  for r in sorted(rows, key=lambda r: (r['seq_len'], r['model'])):
    if r.get('status') != 'ok':
      lines.append(f'| {r["model"]} | {r["seq_len"]} | {r.get("status")}: '
                   f'{r.get("error", "")[:80]} |' + ' |' * (5 + len(ratio_keys) + len(extra)))
      continue
    f = lambda k, spec='.3g': '' if r.get(k) is None else format(r[k], spec)
    mb = '' if r.get('peak_memory_bytes') is None else f'{r["peak_memory_bytes"] / 2**20:.0f}'
    lines.append(f'| {r["model"]} | {r["seq_len"]} | {f("tokens_per_s_train", ",.0f")} | '
                 f'{f("tokens_per_s_infer", ",.0f")} | {f("step_ms", ".1f")} | '
                 f'{f("compile_s", ".2f")} | {mb} | ' +
                 ' | '.join([f(k, '.2f') for k in ratio_keys] +
                            ([f('predicted_step_ms', '.3g'), f('measured_over_predicted', '.3g')]
                             if predicted else [])) + ' |')
  return '\n'.join(lines)


def _slope(points) -> float:
  """The log-log slope over the long-T half when there are enough points, else all."""
  if len(points) >= 4:
    return fitted_slope(points)
  return float(np.polyfit(np.log([t for t, _ in points]), np.log([y for _, y in points]), 1)[0])


def _layer(name: str) -> str:
  """'lstm:fused@2/bfloat16' -> 'lstm': the layer family a throughput name times."""
  return models.split_name(benchmark.split_devices(benchmark.split_dtype(name)[0])[0])[0]


def claims(rows) -> list[study.Claim]:
  ok = [r for r in rows if r.get('status') == 'ok']
  out = []
  names = list(dict.fromkeys(r['model'] for r in ok))
  slopes = {m: slope_ci(ok, m, 'step_ms', 'step_ms_samples') for m in names
            if len(series(ok, 'step_ms').get(m, [])) >= 2}
  rec = {m: v for m, v in slopes.items() if _layer(m) in ('rnn', 'lstm', 'gru')}
  att = {m: v for m, v in slopes.items() if _layer(m) == 'attention'}
  if rec and att:
    failed = [f'{r["model"]} T={r["seq_len"]} {r.get("status")}' for r in rows
              if r.get('status') != 'ok' and _layer(r['model']) in ('rnn', 'lstm', 'gru',
                                                                     'attention')]
    parts = [stats.above(f'{m} steeper than {r}', stats.difference(v, rec[r]), 0.0,
                         spec='+.2f', rule=f'slope({m}) - slope({r}) > 0')
             for m, v in att.items() for r in rec]
    out.append(study.claim(
        'Each attention layer\'s train-step time grows faster with T than every recurrent '
        '(rnn, lstm, gru) layer\'s: a steeper log-log slope (O(T^2) against O(T) in theory).',
        parts,
        f'Log-log slopes of the median step time over T = '
        f'{", ".join(str(t) for t in sorted({r["seq_len"] for r in ok}))} (the longer half), '
        f'95% bootstrap intervals over the timed steps: ' +
        ', '.join(f'{m} {v.fmt(".2f")}' for m, v in {**rec, **att}.items()) + '.' +
        (f' Not finished, left out of the slopes: {", ".join(failed)}.' if failed else '')))
  # lstm:fused against flax_lstm in the same run; a fused point that did not finish
  # (timeout, out of memory) is not shown faster
  by = {(r['model'], r['seq_len'], r['batch']): r for r in ok}
  fused = {r['seq_len']: speed_ratio_ci(r, by[('flax_lstm', r['seq_len'], r['batch'])])
           for r in ok if r['model'] == 'lstm:fused'
           and ('flax_lstm', r['seq_len'], r['batch']) in by}
  unfinished = {r['seq_len']: r.get('status') for r in rows
                if r['model'] == 'lstm:fused' and r.get('status') != 'ok'}
  if fused:
    out.append(study.claim(
        'seqlab\'s fused LSTM trains at least 1.35x as fast as flax\'s LSTM at every T run '
        '(issue target).',
        [stats.above(f'fused / flax at T={t}', v, 1.35, spec='.2f')
         for t, v in sorted(fused.items())] +
        [stats.missing(f'fused / flax at T={t}', why) for t, why in sorted(unfinished.items())],
        'Ratio of median step times (flax / fused), same run, same shapes, 95% bootstrap '
        'interval over the timed steps.'))
  # The accelerator targets (issue 24), from a device run in bfloat16: the fastest seqlab
  # kernel of each family against torch's at T = 1024 and 8192 (both: one not measured
  # does not hold).
  for family, baseline, target in (('lstm', 'torch_lstm', 1.0), ('attention', 'torch_sdpa', 0.9)):
    best = {}
    for r in ok:
      layer, dtype = benchmark.split_dtype(r['model'])
      base = by.get((f'{baseline}/bfloat16', r['seq_len'], r['batch'])) or by.get(
          (baseline, r['seq_len'], r['batch']))
      if (dtype == 'bfloat16' and _layer(r['model']) == family and r['seq_len'] in (1024, 8192)
          and base is not None):
        iv = speed_ratio_ci(r, base)
        if iv.value > best.get(r['seq_len'], (stats.exact(0.0), ''))[0].value:
          best[r['seq_len']] = (iv, layer)
    if best:
      out.append(study.claim(
          f'In bfloat16 on the device, seqlab\'s fastest {family} kernel trains at least '
          f'{target:g}x as fast as {baseline} at T = 1024 and 8192 (issue target).',
          [stats.above(f'{best[t][1]} / {baseline} at T={t}', best[t][0], target, spec='.2f')
           if t in best else stats.missing(f'{family} / {baseline} at T={t}', 'not measured')
           for t in (1024, 8192)],
          'Ratio of median step times, same run, same shapes, 95% bootstrap interval over the '
          'timed steps.'))
  return out


def series(rows, key):
  """model -> [(T, value)] sorted by T, from the ok rows that have `key`."""
  out = {}
  for r in rows:
    if r.get('status') == 'ok' and r.get(key):
      out.setdefault(r['model'], []).append((r['seq_len'], r[key]))
  return {m: sorted(v) for m, v in out.items()}


def longer_half(points) -> list:
  """The longer half of points sorted by T (at least 2 where there are 2)."""
  start = len(points) // 2 - (len(points) % 2 == 0 and len(points) > 2)
  return points[max(0, min(start, len(points) - 2)):]


def fitted_slope(points) -> float:
  """Slope of log(y) on log(T) over the longer half of the points (at least 2)."""
  pts = longer_half(points)
  if len(pts) < 2:
    return float('nan')
  x, y = np.log([p[0] for p in pts]), np.log([p[1] for p in pts])
  return float(np.polyfit(x, y, 1)[0])


def slope_ci(rows, model: str, key: str, samples_key: str) -> stats.Interval:
  """fitted_slope of `model`'s `key` with a 95% bootstrap interval: each length's timed
  samples (`samples_key`) resampled, the slope of the log medians refitted (rows from
  before samples were kept: the slope alone)."""
  mine = sorted((r['seq_len'], r) for r in rows
                if r['model'] == model and r.get('status') == 'ok' and r.get(key))
  pts = longer_half([(t, r[key], r.get(samples_key)) for t, r in mine])
  if len(pts) < 2:
    return stats.Interval(math.nan, math.nan, math.nan)
  if any(not p[2] for p in pts):
    return stats.exact(fitted_slope([(t, v) for t, v, _ in pts]))
  log_t = np.log([p[0] for p in pts])

  def slope(*samples):
    return np.polyfit(log_t, np.log([np.median(x) for x in samples]), 1)[0]
  return stats.bootstrap_ci(tuple(p[2] for p in pts), slope)


def speed_ratio_ci(fast: dict, base: dict) -> stats.Interval:
  """How many times faster `fast` trains than `base` (median step time ratio), with a
  95% bootstrap interval over both rows' timed steps."""
  a, b = fast.get('step_ms_samples'), base.get('step_ms_samples')
  if not a or not b:
    return stats.exact(base['step_ms'] / fast['step_ms'])
  return stats.bootstrap_ci((a, b), lambda x, y: np.median(y) / np.median(x))


def crossover_t(rows, attention_model: str, lstm_model: str,
                key: str = 'tokens_per_s_train') -> float | None:
  """The T (interpolated in log T) where attention's tokens/s (`key`) falls below the
  LSTM's."""
  s = series(rows, key)
  a, l = dict(s.get(attention_model, [])), dict(s.get(lstm_model, []))
  ts = sorted(set(a) & set(l))
  prev = None
  for t in ts:
    d = math.log(a[t] / l[t])
    if prev is not None and prev[1] > 0 >= d:
      t0, d0 = prev
      return float(math.exp(math.log(t0) + (math.log(t) - math.log(t0)) * d0 / (d0 - d)))
    if prev is None and d <= 0:
      return float(t)
    prev = (t, d)
  return None


# The families of throughput_a's columns: each layer and the baselines it is compared with.
FAMILIES = [
    ('LSTM, GRU', lambda m: _layer(m) in ('lstm', 'gru', 'flax_lstm', 'torch_lstm')),
    ('RNN, LRU, minGRU', lambda m: _layer(m) in ('rnn', 'lru', 'mingru')),
    ('attention', lambda m: _layer(m) in ('attention', 'transformer', 'jax_attention',
                                          'torch_sdpa')),
]


def _pick(models, prefs):
  return next((m for m in prefs if m in models), None)


def draw(workdir: str) -> list[str]:
  import matplotlib.pyplot as plt
  plot_style.apply()
  rows = writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
  if not any(r.get('status') == 'ok' for r in rows):
    return []
  figdir = os.path.join(workdir, 'figures')
  names = {r['model'] for r in rows}
  attn = _pick(names, ['attention:blocked', 'attention:einsum', 'transformer'])
  lstm = _pick(names, ['lstm:fused', 'lstm'])
  cross = crossover_t(rows, attn, lstm) if attn and lstm else None
  # Colour and marker by model; line by implementation: the reference solid, the fast
  # variants (fused, blocked, parallel) dashed, the others (einsum, sequential) dash-dot,
  # baselines dotted; a layer split over devices ('@2') has hollow markers.
  def linestyle(m):
    if m in benchmark.BASELINES:
      return ':'
    impl = m.split(':', 1)[1] if ':' in m else ''
    return '-' if not impl else '-.' if impl in ('einsum', 'sequential') else '--'

  def style(m):
    layer, split, _ = m.partition('@')
    return dict(color=plot_style.color(layer), marker=plot_style.marker(layer),
                linestyle=linestyle(layer), **({'markerfacecolor': 'none'} if split else {}))
  seq_lens = sorted({r['seq_len'] for r in rows if r.get('status') == 'ok'})
  outside = dict(loc='upper left', bbox_to_anchor=(1.02, 1.0), fontsize=6, frameon=False)
  paths = []
  # (a) one column per family of layers, its baselines beside it, so each panel holds a
  # few lines a reader can tell apart: train step above, inference below
  groups = [(title, sorted(m for m in series(rows, 'tokens_per_s_train') if pick(m)))
            for title, pick in FAMILIES]
  groups = [(t, ms) for t, ms in groups if ms]
  fig, axes = plt.subplots(2, len(groups), figsize=(2.45 * len(groups) + 0.4, 5.2),
                           squeeze=False)
  for j, (title, members) in enumerate(groups):
    for i, (key, what) in enumerate((('tokens_per_s_train', 'train step'),
                                     ('tokens_per_s_infer', 'inference'))):
      ax = axes[i][j]
      for m, pts in sorted(series(rows, key).items()):
        if m in members:
          ax.plot(*zip(*pts), label=m, **style(m))
      ax.set(xscale='log', yscale='log', title=f'{title}: {what}')
      ax.title.set_fontsize(7)
      plot_style.log_ticks(ax, seq_lens)
      plot_style.dense_log_labels(ax)
      if i == 1:
        ax.set_xlabel('sequence length T')
      if j == 0:
        ax.set_ylabel('tokens / s')
      if cross and attn in members:
        ax.axvline(cross, color='k', linewidth=0.8, linestyle=':')
    axes[1][j].legend(loc='upper center', bbox_to_anchor=(0.5, -0.28), ncol=2, fontsize=6,
                      frameon=False, handlelength=2.6)   # under its column, off the lines
  fig.tight_layout()
  paths += plot_style.save(fig, os.path.join(figdir, 'throughput_a'))
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  for m, pts in sorted(series(rows, 'step_ms').items()):
    ax.plot(*zip(*pts), label=f'{m} (slope {fitted_slope(pts):.2f})', **style(m))
  if cross:
    ax.axvline(cross, color='k', linewidth=0.8, linestyle=':')
  ax.set(xscale='log', yscale='log', xlabel='sequence length T', ylabel='train step (ms)')
  plot_style.log_ticks(ax, seq_lens)
  plot_style.plain_log_labels(ax)
  ax.legend(**outside)
  paths += plot_style.save(fig, os.path.join(figdir, 'throughput_b'))
  fig, ax = plt.subplots(figsize=plot_style.COLUMN)
  for m, pts in sorted(series(rows, 'peak_memory_bytes').items()):
    ax.plot([p[0] for p in pts], [p[1] / 2 ** 20 for p in pts], label=m, **style(m))
  ax.set(xscale='log', yscale='log', xlabel='sequence length T',
         ylabel='peak memory, train step (MiB)')
  plot_style.log_ticks(ax, seq_lens)
  plot_style.plain_log_labels(ax)
  ax.legend(**outside)
  paths += plot_style.save(fig, os.path.join(figdir, 'throughput_c'))
  return paths
