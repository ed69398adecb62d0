"""What generating token by token costs: a recurrent model carries a fixed-size state,
O(1) time and memory per token; a transformer's KV cache grows with the context, O(L)
per token and O(L) memory. Per-token latency, tokens/s, prefill time and the bytes of
the state or cache against context length L, at each batch size, with the no-cache
baseline (re-running the prefix for every token) beside them
(seqlab.measure.decoding says how each is timed).

Figures, read only from workdir/results.jsonl:
generation_a: per-token latency against L, one panel per batch size, with each model's
              fitted log-log slope; the context where the transformer's per-token cost
              passes the LSTM's is marked.
generation_b: bytes of the state or KV cache per sequence against L.
generation_c: prefill time against L.
"""
from __future__ import annotations

import os
import sys

from seqlab import models, sweep
from seqlab.infra import storage, writer
from seqlab.measure import decoding
from seqlab.studies import plot_style, stats, study, throughput

NAME = 'generation'
TITLE = 'Generation: the cost of a growing context'
CAPTIONS = {
    'generation_a': 'Per-token decode latency against context length (log-log) with fitted '
                    'slopes; dotted: where the transformer becomes slower than the LSTM.',
    'generation_b': 'Bytes of the recurrent state or KV cache per sequence against context.',
    'generation_c': 'Prefill time (the prompt in one parallel pass) against context length.',
}
FLAT, LINEAR = 0.25, 0.6   # |slope| below FLAT: constant; above LINEAR: growing with L


def _config(config) -> decoding.GenerationConfig:
  return decoding.GenerationConfig(**config.generation.to_dict())


def validate(config) -> None:
  sw = config.sweep
  for name in sw.models:
    if name == decoding.RERUN:
      continue
    base, kernel = models.split_name(name)
    if base not in models.MODELS:
      raise sweep.ConfigError(f'unknown model {name!r}; allowed: {", ".join(models.MODELS)}, '
                              f'{decoding.RERUN} (each as MODEL[:KERNEL])')
    try:
      models.resolve_kernel(base, kernel)
    except ValueError as e:
      raise sweep.ConfigError(f'{name!r}: {e}') from None
  for axis in ('seq_lens', 'batches'):
    for v in sw[axis]:
      if int(v) < 1:
        raise sweep.ConfigError(f'sweep.{axis} has {v}; every value must be an integer >= 1')
  try:
    gc = _config(config)
  except TypeError as e:
    raise sweep.ConfigError(f'config.generation: {e}') from None
  if gc.dtype not in models.DTYPES:
    raise sweep.ConfigError(f'generation.dtype={gc.dtype!r}; allowed: {", ".join(models.DTYPES)}')


def point_name(model: str, batch: int, context: int) -> str:
  return f'{model}-B{batch}-L{context}'


def run(config, workdir: str) -> list[dict]:
  """Every (model, batch, context) not yet in workdir/results.jsonl, by growing context;
  a model that times out at some context is not tried at longer ones."""
  validate(config)
  gc = _config(config)
  storage.makedirs(workdir)
  path = os.path.join(workdir, 'results.jsonl')
  old = writer.read_jsonl(path)
  done = {r['point'] for r in old}
  given_up = {(r['model'], r['batch']) for r in old if r.get('status') != 'ok'}
  last = {}   # (model, batch) -> {'decode': (L, s), 'prefill': (L, s)} of the longest ok point
  for r in sorted(old, key=lambda r: r['seq_len']):
    if r.get('status') == 'ok':
      _remember(last, r)
  for context in sorted(int(t) for t in config.sweep.seq_lens):
    for batch in (int(b) for b in config.sweep.batches):
      for name in config.sweep.models:
        key = (name, batch)
        if point_name(name, batch, context) in done or key in given_up:
          continue
        r = decoding.measure(name, gc, context, batch, last.get(key, {}).get('decode'),
                             last.get(key, {}).get('prefill'))
        r = {'point': point_name(name, batch, context), **r}
        if r['status'] == 'ok':
          _remember(last, r)
        else:
          given_up.add(key)
        print(f'L={context:>6} B={batch:>3} {name:<20} ' + (
            f'{r["decode_ms_per_token"]:8.2f} ms/token {r["tokens_per_s"]:>10,.0f} tok/s  '
            f'state {r["state_bytes_per_sequence"] / 2**10:,.1f} KiB/seq' +
            (f'  prefill {r["prefill_ms"]:,.0f} ms' if 'prefill_ms' in r else '')
            if r['status'] == 'ok' else f'{r["status"]}: {r["error"]}'), flush=True)
        if writer.is_writer():
          writer.append_jsonl_atomic(path, r)
  return study.finish(sys.modules[__name__], workdir)


def _remember(last: dict, r: dict) -> None:
  entry = last.setdefault((r['model'], r['batch']), {})
  entry['decode'] = (r['seq_len'], r['decode_ms_per_token'] / 1e3)
  if r.get('prefill_ms') is not None:
    entry['prefill'] = (r['seq_len'], r['prefill_ms'] / 1e3)


def rows(workdir: str) -> list[dict]:
  return writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))


def _by_batch(rows) -> dict[int, list[dict]]:
  out = {}
  for r in rows:
    out.setdefault(r['batch'], []).append(r)
  return dict(sorted(out.items()))


def slopes(rows, key: str = 'decode_ms_per_token') -> dict[str, float]:
  """model -> log-log slope of `key` against context over the longer half of its points."""
  return {m: throughput.fitted_slope(p) for m, p in throughput.series(rows, key).items()
          if len(p) >= 2}


def crossover(rows) -> float | None:
  """The context where the transformer's tokens/s falls below the LSTM's (log-interpolated)."""
  names = {r['model'] for r in rows}
  att = next((m for m in sorted(names) if m.startswith('transformer') and m != decoding.RERUN),
             None)
  lstm = next((m for m in sorted(names) if m.split(':')[0] == 'lstm'), None)
  if not att or not lstm:
    return None
  return throughput.crossover_t(rows, att, lstm, key='tokens_per_s')


def table(rows) -> str:
  lines = ['| model | batch | context L | ms/token | tokens/s | state KiB/seq | prefill ms |',
           '|---|---|---|---|---|---|---|']
  for r in sorted(rows, key=lambda r: (r['batch'], r['model'], r['seq_len'])):
    if r.get('status') != 'ok':
      lines.append(f'| {r["model"]} | {r["batch"]} | {r["seq_len"]} | {r["status"]}: '
                   f'{r.get("error", "")[:70]} | | | |')
      continue
    prefill = f'{r["prefill_ms"]:,.1f}' if r.get('prefill_ms') is not None else (
        'timeout' if r.get('prefill_error') else '-')
    lines.append(f'| {r["model"]} | {r["batch"]} | {r["seq_len"]} | '
                 f'{r["decode_ms_per_token"]:.3f} | {r["tokens_per_s"]:,.0f} | '
                 f'{r["state_bytes_per_sequence"] / 2**10:,.1f} | {prefill} |')
  return '\n'.join(lines)


def claims(rows) -> list[study.Claim]:
  """Per batch: every recurrent model (a context it timed out at is not flat) against
  every transformer (its slope over the contexts it finished), each slope with its 95%
  bootstrap interval over the timed tokens."""
  out = []
  for batch, everything in _by_batch(rows).items():
    rs = [r for r in everything if r.get('status') == 'ok']
    names = list(dict.fromkeys(r['model'] for r in everything))
    rec = [m for m in names if models.split_name(m)[0] != 'transformer' and m != decoding.RERUN]
    att = [m for m in names if models.split_name(m)[0] == 'transformer']
    if not rec or not att:
      continue
    slope = {m: throughput.slope_ci(rs, m, 'decode_ms_per_token', 'decode_ms_samples')
             for m in rec + att}
    timed_out = {m: [r['seq_len'] for r in everything
                     if r['model'] == m and r.get('status') != 'ok']
                 for m in rec}
    # bytes of each model's state or cache, by growing context (exact counts)
    mem = {m: [r['state_bytes_per_sequence'] for r in sorted(rs, key=lambda r: r['seq_len'])
               if r['model'] == m] for m in rec + att}
    parts = []
    for m in rec:
      name = f'{m} per-token cost flat'
      if timed_out[m]:
        parts.append(stats.missing(name, f'timed out at L = {", ".join(map(str, timed_out[m]))}'))
      else:
        parts.append(stats.within(name, slope[m], -FLAT, FLAT, spec='+.2f',
                                  rule=f'|slope| < {FLAT:g}'))
    parts += [stats.above(f'{m} per-token cost grows with L', slope[m], LINEAR, spec='+.2f')
              for m in att]
    parts += [stats.Part(f'{m} state size constant',
                         stats.HOLDS if len(set(mem[m])) == 1 else stats.FAILS,
                         ' -> '.join(f'{b:,} B' for b in mem[m]), 'the same at every L (exact)')
              for m in rec]
    parts += [stats.Part(f'{m} cache grows with L',
                         stats.HOLDS if len(mem[m]) > 1 and all(
                             b > a for a, b in zip(mem[m], mem[m][1:])) else stats.FAILS,
                         ' -> '.join(f'{b:,} B' for b in mem[m]), 'larger at each longer L (exact)')
              for m in att]
    cross = crossover(rs)
    contexts = sorted({r['seq_len'] for r in rs})
    if cross is None:
      where = 'at no context measured here.'
    elif cross <= contexts[0]:
      where = f'every context measured here (already at L = {contexts[0]}).'
    else:
      where = f'L ~ {cross:,.0f}.'
    out.append(study.claim(
        f'Generating at batch {batch}, a recurrent model\'s per-token cost stays flat as the '
        f'context grows (|log-log slope of ms/token against L| < {FLAT:g} over the longer half '
        f'of the contexts, none timed out; a fixed-size state) while a transformer\'s '
        f'per-token cost (slope > {LINEAR:g}) and KV cache grow with it (O(L) in theory).', parts,
        f'Log-log slopes of the median ms/token against L over L = '
        f'{", ".join(map(str, contexts))} (the longer half), 95% bootstrap intervals over the '
        f'timed tokens. The transformer is slower per token than the LSTM from ' + where))
  return out


def draw(workdir: str) -> list[str]:
  import matplotlib.pyplot as plt
  plot_style.apply()
  ok = [r for r in rows(workdir) if r.get('status') == 'ok']
  if not ok:
    return []
  figdir = os.path.join(workdir, 'figures')
  contexts = sorted({r['seq_len'] for r in ok})
  batches = _by_batch(ok)

  def style(m):
    base = models.split_name(m)[0] if m != decoding.RERUN else 'transformer'
    return dict(color=plot_style.color(base), marker=plot_style.marker(base),
                linestyle=':' if m == decoding.RERUN else '-')

  paths = []
  fig, axes = plt.subplots(1, len(batches), figsize=(3.4 * len(batches), 2.8), squeeze=False)
  for ax, (batch, rs) in zip(axes[0], batches.items()):
    s = slopes(rs)
    for m, pts in sorted(throughput.series(rs, 'decode_ms_per_token').items()):
      ax.plot(*zip(*pts), label=f'{m} (slope {s.get(m, float("nan")):.2f})', **style(m))
    cross = crossover(rs)
    if cross and cross > min(contexts):   # at the shortest context: no crossing in range
      ax.axvline(cross, color='k', linewidth=0.8, linestyle=':')
      ax.annotate(f'L≈{cross:,.0f}', (cross, ax.get_ylim()[0]), fontsize=6, xytext=(3, 3),
                  textcoords='offset points')
    ax.set(xscale='log', yscale='log', xlabel='context length L', ylabel='ms per token',
           title=f'batch {batch}')
    plot_style.log_ticks(ax, contexts)
    ax.legend(fontsize=5)
  fig.tight_layout()
  paths += plot_style.save(fig, os.path.join(figdir, 'generation_a'))
  for stem, key, scale, ylabel in (
      ('generation_b', 'state_bytes_per_sequence', 1 / 2**10, 'state or KV cache, KiB/sequence'),
      ('generation_c', 'prefill_ms', 1.0, 'prefill time (ms)')):
    fig, ax = plt.subplots(figsize=plot_style.COLUMN)
    first = min(batches)
    for m, pts in sorted(throughput.series(batches[first], key).items()):
      ax.plot([p[0] for p in pts], [p[1] * scale for p in pts], label=m, **style(m))
    ax.set(xscale='log', yscale='log', xlabel='context length L', ylabel=ylabel,
           title=f'batch {first}')
    plot_style.log_ticks(ax, contexts)
    ax.legend(fontsize=5)
    paths += plot_style.save(fig, os.path.join(figdir, stem))
  return paths
