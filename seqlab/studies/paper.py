"""Published tables side by side: seqlab's numbers next to Bai, Kolter & Koltun (2018)
Table 1 and LRA's ListOps Transformer (Tay et al. 2021).

Each group of experiments/paper.py is one published row set (a task, its settings, its
models); every (group, model, seed) point is trained by the one training loop. A row
of the table is paper | seqlab mean ± std over seeds | verdict:
  within spread       the published number lies in mean ± 2 std of seqlab's seeds, at
                      the paper's own T and data (only then is a number comparable);
  same side of chance seqlab and the paper both beat chance, or both do not (a model
                      "beats chance" when it closes >= BEATS of the gap from chance to
                      perfect: loss <= (1 - BEATS) x chance, or accuracy >= chance +
                      BEATS x (1 - chance));
  differs             otherwise.
At :cpu scale (shorter T, digits for MNIST) only the side of chance is compared. The
claims check the papers' ordering of models, which holds at any scale.
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from collections import defaultdict

import numpy as np

from seqlab import jobs, sweep
from seqlab.infra import writer
from seqlab.studies import plot_style, study

NAME = 'paper'
TITLE = 'Published tables side by side'
CAPTIONS = {'paper': 'Score against chance (0: chance, 1: perfect) of each published row: '
                     'the paper at its own T (open) and seqlab at the T under each column '
                     '(filled: mean, bar: min-max over seeds).'}

BAI = 'Bai et al. 2018, Table 1'
# group -> the published numbers: metric, the paper's T, its chance level, model -> value.
PUBLISHED = {
    'adding': dict(metric='mse', t=600, chance=1 / 6, source=BAI,
                   values={'lstm': 0.164, 'gru': 5.3e-5, 'rnn': 0.177}),
    'copy': dict(metric='loss', t=1000, chance=10 * math.log(8) / 1020, source=BAI,
                 values={'lstm': 0.0204, 'gru': 0.0197, 'rnn': 0.0202}),
    # MNIST's majority class ('1') is 1,135 of the 10,000 test images.
    'smnist': dict(metric='accuracy', t=784, chance=0.1135, source=BAI,
                   values={'lstm': 0.872, 'gru': 0.962, 'rnn': 0.215}),
    'psmnist': dict(metric='accuracy', t=784, chance=0.1135, source=BAI,
                    values={'lstm': 0.857, 'gru': 0.873, 'rnn': 0.253}),
    # LRA publishes no majority class; seqlab's generator's own is used for both sides.
    'listops': dict(metric='accuracy', t=2000, chance=None, source='Tay et al. 2021 (LRA)',
                    values={'transformer': 0.3637}),
}
PAPER_TASKS = {'adding': 'adding', 'copy': 'copy', 'smnist': 'smnist', 'psmnist': 'psmnist',
               'listops': 'listops'}
BEATS = 0.1          # closes >= 10% of the gap from chance to perfect: beats chance
SOLVED = 0.1         # adding: MSE below 10% of chance is solved (as in long_range)
AT_CHANCE = 0.5      # loss above half of chance: at chance (as in long_range)
FAR_ABOVE = 0.2      # sequential digits: 'far above' = at least 20 accuracy points more
ESTIMATE_STEPS = 4   # estimate_only: timed steps per point (the first compiles)


# ---------------------------------------------------------------------------- points
def points(config) -> list[dict]:
  return [dict(group=name, model=m, task=g.task, seq_len=int(g.seq_len), seed=int(s))
          for name, g in config.groups.items() for m in g.models for s in config.seeds]


def point_name(p: dict) -> str:
  return f'{p["group"]}-{p["model"]}-T{p["seq_len"]}-s{p["seed"]}'


# estimate_only times an image point on a stand-in of the same length and readout
# (real-valued pixels, one class from the last state), so it needs no download.
STAND_IN = {'smnist': 'adding', 'psmnist': 'adding', 'scifar': 'adding'}


def point_config(config, p: dict, stand_in: bool = False):
  """The long-range-style config of one point: the group's task, settings and model."""
  g = config.groups[p['group']]
  if stand_in:
    p = dict(p, task=STAND_IN.get(p['task'], p['task']))
  c = sweep.point_config(config, p, param_budget=int(g.param_budget), **g.model.to_dict())
  with c.unlocked():
    for k in ('steps', 'batch_size', 'lr', 'warmup_steps', 'clip_norm'):
      c.train[k] = g[k]
  return c


def validate(config) -> None:
  """Groups with published rows, models with published numbers, and each group's own
  sweep checks (its data load; with estimate_only, its stand-in's)."""
  unknown = [n for n in config.groups if n not in PUBLISHED]
  if unknown:
    raise sweep.ConfigError(f'paper groups {unknown} have no published row; allowed: '
                            f'{", ".join(PUBLISHED)}')
  for name, g in config.groups.items():
    c = point_config(config, dict(group=name, model=g.models[0], task=g.task,
                                  seq_len=g.seq_len, seed=0), config.get('estimate_only'))
    with c.unlocked():
      c.sweep = dict(models=list(g.models), tasks=[c.task.name], seq_lens=[int(g.seq_len)],
                     seeds=list(config.seeds))
    sweep.validate(c)
    missing = [m for m in g.models if m not in PUBLISHED[name]['values']]
    if missing:
      raise sweep.ConfigError(f'paper group {name}: no published number for {missing}; '
                              f'allowed: {", ".join(PUBLISHED[name]["values"])}')


def run(config, workdir: str) -> list[dict]:
  """Trains every point not yet in results.jsonl (or, with estimate_only, times a few
  steps of each and writes estimate.md), then the table, figure and claims."""
  validate(config)
  if config.get('estimate_only'):
    return estimate(config, workdir)
  jobs.compile_cache(workdir)
  done = sweep.finished(workdir)
  todo = [p for p in points(config) if point_name(p) not in done]
  print(f'paper: {len(todo)} of {len(points(config))} points to train', flush=True)
  count = iter(range(1, len(todo) + 1))

  def on_result(p, result):
    name = point_name(p)
    row = {'point': name, **result, **p}
    if writer.is_writer():
      writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), row)
    print(f'[{next(count)}/{len(todo)}] {name}: {_fmt(score_value(row), row)} '
          f'({result["wall_s"]:.0f} s)', flush=True)

  jobs.run(config.get('jobs', 1), jobs.train_quiet,
           [(p, (point_config(config, p), os.path.join(workdir, point_name(p))),
             os.path.join(workdir, point_name(p))) for p in todo], on_result)
  return study.finish(sys.modules[__name__], workdir)


def estimate(config, workdir: str) -> list[dict]:
  """Times ESTIMATE_STEPS steps of one seed of every (group, model) on this machine and
  writes estimate.md: steps x the measured step time, per point and in all."""
  from seqlab import train
  from seqlab.data import tasks
  lines = ['| point | step (s) | steps | seeds | estimate (h) |', '|---|---|---|---|---|']
  total = 0.0
  for p in points(config):
    if p['seed'] != config.seeds[0]:
      continue
    c = point_config(config, p, stand_in=True)
    steps = int(c.train.steps)
    with c.unlocked():
      c.train.steps, c.train.checkpoint_every, c.train.eval_batches = ESTIMATE_STEPS, 0, 1
    with tempfile.TemporaryDirectory() as tmp:
      r = train.train(c, tmp, verbose=False)
    tokens = c.train.batch_size * tasks.build(c.task).input_len(p['seq_len'])
    step_s = tokens / r['tokens_per_s']   # train's rate counts input_len tokens a step
    hours = step_s * steps * len(config.seeds) / 3600
    total += hours
    name = point_name(p) + (f' (timed on {c.task.name})' if c.task.name != p['task'] else '')
    lines.append(f'| {name} | {step_s:.3g} | {steps} | {len(config.seeds)} | {hours:.2f} |')
    print(lines[-1], flush=True)
  lines.append(f'| all | | | | {total:.1f} |')
  if writer.is_writer():
    writer.write_text_atomic(os.path.join(workdir, 'estimate.md'), '\n'.join(lines) + '\n')
  print('\n'.join(lines))
  return []


# --------------------------------------------------------------------------- reading
def rows(workdir: str) -> list[dict]:
  return [dict(r) for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
          if 'group' in r]


def value(row: dict) -> float | None:
  """The row's number in the paper's metric: held-out accuracy or loss."""
  pub = PUBLISHED[row['group']]
  v = row.get('final_accuracy') if pub['metric'] == 'accuracy' else row.get('final_loss')
  return v if v is not None and math.isfinite(v) else None


def chance_of(row: dict) -> float:
  """seqlab's chance level of the row, in the paper's metric."""
  if PUBLISHED[row['group']]['metric'] == 'accuracy':
    return row.get('majority_accuracy') or 0.0
  return row['chance_loss']


def score(v: float, chance: float, metric: str) -> float:
  """The fraction of the gap from chance to perfect that `v` closes (0 chance, 1 perfect)."""
  if metric == 'accuracy':
    return (v - chance) / (1.0 - chance)
  return 1.0 - v / chance


def score_value(row: dict) -> float | None:
  v = value(row)
  return None if v is None else score(v, chance_of(row), PUBLISHED[row['group']]['metric'])


def _fmt(s, row) -> str:
  return 'diverged' if s is None else f'{value(row):.4g} (score {s:.3f})'


def grouped(rows) -> dict:
  """(group, model) -> that pair's rows over seeds, in published order."""
  g = defaultdict(list)
  for r in rows:
    g[(r['group'], r['model'])].append(r)
  def order(key):
    group, model = key
    return list(PUBLISHED).index(group), list(PUBLISHED[group]['values']).index(model)
  return {k: g[k] for k in sorted(g, key=order)}


def compare(rs: list[dict]) -> dict:
  """The comparison of one (group, model): seqlab's mean/std, the paper's number and the
  verdict (module docstring)."""
  r0 = rs[0]
  pub = PUBLISHED[r0['group']]
  paper = pub['values'][r0['model']]
  vals = [value(r) for r in rs]
  ok = [v for v in vals if v is not None]
  chance = chance_of(r0)
  paper_chance = pub['chance'] if pub['chance'] is not None else chance
  same_setting = (r0['task'] == PAPER_TASKS[r0['group']] and r0['seq_len'] == pub['t'])
  out = dict(paper=paper, mean=float(np.mean(ok)) if ok else None,
             std=float(np.std(ok)) if ok else None, seeds=len(rs), diverged=len(vals) - len(ok),
             same_setting=same_setting, chance=chance)
  if len(ok) < len(vals) or not ok:
    out['verdict'] = 'differs'
    out['why'] = f'{len(vals) - len(ok)} of {len(vals)} seeds diverged'
    return out
  m = pub['metric']
  paper_beats = score(paper, paper_chance, m) >= BEATS
  ours_beats = score(out['mean'], chance, m) >= BEATS
  if same_setting and abs(paper - out['mean']) <= 2 * out['std']:
    out['verdict'], out['why'] = 'within spread', 'within mean ± 2 std'
  elif paper_beats == ours_beats:
    out['verdict'] = 'same side of chance'
    out['why'] = 'both beat chance' if ours_beats else 'both at chance'
  else:
    out['verdict'] = 'differs'
    out['why'] = 'seqlab beats chance, the paper does not' if ours_beats else \
        'the paper beats chance, seqlab does not'
  return out


def _num(v: float, metric: str) -> str:
  return f'{100 * v:.1f}%' if metric == 'accuracy' else f'{v:.3g}'


def table(rows: list[dict]) -> str:
  if not rows:
    return '(no results)'
  lines = ['| row | model | paper (T) | seqlab mean ± std (seeds) | seqlab T, steps | chance '
           '| verdict |', '|---|---|---|---|---|---|---|']
  for (group, model), rs in grouped(rows).items():
    pub, c = PUBLISHED[group], compare(rs)
    m = pub['metric']
    ours = ('diverged' if c['mean'] is None else
            f'{_num(c["mean"], m)} ± {_num(c["std"], m)} ({c["seeds"]})')
    lines.append(f'| {group} ({m}) | {model} | {_num(c["paper"], m)} (T={pub["t"]}) | {ours} | '
                 f'{rs[0]["task"]} T={rs[0]["seq_len"]}, {rs[0]["steps"]} | '
                 f'{_num(c["chance"], m)} | {c["verdict"]}: {c["why"]} |')
  if any(not compare(rs)['same_setting'] for rs in grouped(rows).values()):
    lines.append('\nA row at another T, or on other data, than the paper\'s compares only the '
                 'side of chance; the claims test the papers\' ordering of the models.')
  lines.append('\nPaper: ' + '; '.join(sorted({f'{g} {p["source"]}' for g, p in
                                                PUBLISHED.items() if any(
                                                    r['group'] == g for r in rows)})) + '.')
  return '\n'.join(lines)


def draw(workdir: str) -> list[str]:
  rs = rows(workdir)
  return figure(rs, os.path.join(workdir, 'figures', 'paper')) if rs else []


def figure(rows: list[dict], out_stem: str) -> list[str]:
  """One column per (group, model): the paper's score (open) and seqlab's (filled)."""
  import matplotlib.pyplot as plt
  plot_style.apply()
  g = grouped(rows)
  fig, ax = plt.subplots(figsize=(max(3.4, 0.42 * len(g) + 1), 2.6))
  for i, ((group, model), rs) in enumerate(g.items()):
    pub = PUBLISHED[group]
    c = compare(rs)
    pc = pub['chance'] if pub['chance'] is not None else c['chance']
    ax.plot([i - 0.15], [score(c['paper'], pc, pub['metric'])], 'o', mfc='none', mew=1.2,
            color=plot_style.color(model))
    s = [score_value(r) for r in rs if score_value(r) is not None]
    if s:
      ax.errorbar([i + 0.15], [np.mean(s)], yerr=[[np.mean(s) - min(s)], [max(s) - np.mean(s)]],
                  fmt='s', ms=4, color=plot_style.color(model))
  ax.plot([], [], 'o', mfc='none', mew=1.2, color='0.3', label='paper')
  ax.plot([], [], 's', ms=4, color='0.3', label='seqlab')
  ax.axhline(0.0, color='k', lw=0.8, ls='--', label='chance')
  ts = {k: (f'T={rs[0]["seq_len"]}' if rs[0]['task'] == k[0] else
            f'{rs[0]["task"]} {rs[0]["seq_len"]}') for k, rs in g.items()}
  ax.set_xticks(range(len(g)), [f'{grp}\n{m}\n{ts[(grp, m)]}' for grp, m in g], fontsize=6)
  ax.set_ylabel('score (0 chance, 1 perfect)')
  ax.legend(loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


# ---------------------------------------------------------------------------- claims
def _mean(rows, group, model, fn):
  vals = [fn(r) for r in rows if r['group'] == group and r['model'] == model]
  return float(np.mean(vals)) if vals and None not in vals else None


def _ratio(r):
  return None if value(r) is None else value(r) / r['chance_loss']


def _where(rows, group) -> str:
  rs = [r for r in rows if r['group'] == group]
  return (f'{rs[0]["task"]} T={rs[0]["seq_len"]}, {rs[0]["steps"]} steps, '
          f'{len({r["seed"] for r in rs})} seed(s), lr {rs[0].get("lr", "?")}')


def claims(rows) -> list[study.Claim]:
  out = []
  groups = {r['group'] for r in rows}
  if 'adding' in groups:
    gru, rnn = (_mean(rows, 'adding', m, _ratio) for m in ('gru', 'rnn'))
    out.append(study.claim(
        'Adding (Bai et al. 2018): the GRU solves it while the vanilla RNN stays at the 1/6 '
        'chance level.',
        {'the gru solves it': gru is not None and gru < SOLVED,
         'the rnn stays at chance': rnn is not None and rnn > AT_CHANCE},
        f'MSE / chance: gru {gru if gru is None else f"{gru:.3g}"}, rnn '
        f'{rnn if rnn is None else f"{rnn:.3g}"} ({_where(rows, "adding")}).'))
  if 'copy' in groups:
    ratios = {m: _mean(rows, 'copy', m, _ratio) for m in ('rnn', 'lstm', 'gru')}
    out.append(study.claim(
        'Copy memory (Bai et al. 2018): RNN, LSTM and GRU sit at the memoryless baseline '
        '10 ln 8 / (T + 20).',
        {f'the {m} at the baseline': v is not None and v > AT_CHANCE for m, v in ratios.items()},
        'Loss / baseline: ' + ', '.join(f'{m} {"-" if v is None else f"{v:.3g}"}'
                                        for m, v in ratios.items()) +
        f' ({_where(rows, "copy")}).'))
  digit_groups = [g for g in ('smnist', 'psmnist') if g in groups]
  if digit_groups:
    parts, nums = {}, []
    for g in digit_groups:
      acc = {m: _mean(rows, g, m, value) for m in ('rnn', 'lstm', 'gru')}
      nums.append(f'{g}: ' + ', '.join(f'{m} {"-" if v is None else f"{100 * v:.1f}%"}'
                                       for m, v in acc.items()) + f' ({_where(rows, g)})')
      for m in ('lstm', 'gru'):
        parts[f'{m} >= rnn + {100 * FAR_ABOVE:.0f} points on {g}'] = (
            None not in (acc[m], acc['rnn']) and acc[m] - acc['rnn'] >= FAR_ABOVE)
    short = sorted({r['seq_len'] for r in rows if r['group'] in digit_groups
                    and r['seq_len'] < PUBLISHED[r['group']]['t']})
    why = (f' Likely cause where it fails: T={"/".join(map(str, short))} is '
           f'{PUBLISHED[digit_groups[0]]["t"] / short[-1]:.0f}x shorter than the paper\'s '
           f'{PUBLISHED[digit_groups[0]]["t"]}; the gradient a vanilla RNN must carry back '
           f'vanishes with the length.' if short and not all(parts.values()) else '')
    out.append(study.claim(
        'Sequential (and permuted) pixels (Bai et al. 2018): LSTM and GRU far above the '
        f'vanilla RNN (here: by at least {100 * FAR_ABOVE:.0f} accuracy points).', parts,
        '; '.join(nums) + '.' + why))
  if 'listops' in groups:
    rs = [r for r in rows if r['group'] == 'listops' and r['model'] == 'transformer']
    accs = [value(r) for r in rs]
    maj = rs[0].get('majority_accuracy') if rs else None
    out.append(study.claim(
        'ListOps (LRA: 36.37%): the transformer beats the majority class.',
        {'every seed above the majority class': bool(accs) and maj is not None and all(
            a is not None and a > maj for a in accs)},
        f'Accuracy: {", ".join("diverged" if a is None else f"{100 * a:.1f}%" for a in accs)}'
        f' against the majority class {"-" if maj is None else f"{100 * maj:.1f}%"} '
        f'({_where(rows, "listops")}).'))
  return out
