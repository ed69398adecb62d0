"""Published tables side by side: seqlab's numbers next to Bai, Kolter & Koltun (2018)
Table 1 and LRA's ListOps Transformer (Tay et al. 2021).

Each group of experiments/paper.py is one published row set (a task, its settings, its
models); every (group, model, seed) point is trained by the one training loop. Each row
is judged as a gap, never as a side of chance:
  comparable      seqlab ran the paper's task, T and step budget (PUBLISHED): the row
                  *agrees* when the published number lies within the 95% interval of
                  seqlab's mean over seeds widened by TOLERANCE (2 accuracy points; a
                  factor 1.25 on a loss), else it *differs* by the gap;
  not comparable  T, data or budget differ (the :cpu rows): only the ordering is judged.
The ordering of the models within a group is a claim of three-outcome parts, one per
pair: the paper's relation (better, worse, or level within TOLERANCE) against seqlab's,
read off the interval of the difference (accuracy, or log loss): the same relation holds,
the opposite (or a tie against a strict order) fails as *reversed*, and an interval that
straddles is undecided. A failed part names its likely cause from the direction of the
failure, what differs from the paper's setting, and the controls run (a model name with a
+VARIANT suffix is a control: e.g. lstm+forget1, the LSTM with the usual forget bias 1).
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
from collections import defaultdict

from seqlab import jobs, models, sweep
from seqlab.infra import writer
from seqlab.studies import plot_style, stats, study
from seqlab.studies.published import (  # noqa: F401  (the published numbers and verdicts)
    BAI, PUBLISHED, TOLERANCE, WORDS, _iv, _kind, _num, _relation, compare, differences,
    judge, order_text, paper_score, score_ci, seqlab_relation, value, value_ci)

NAME = 'paper'
TITLE = 'Published tables side by side'
CAPTIONS = {'paper': 'Each published row set in its own metric: the paper at its own T '
                     '(open circle) and seqlab at the setting under each panel (filled: '
                     'mean over seeds, bar: 95% interval); dashed: the input-blind baseline '
                     '(uniform guess; chance loss), dotted: solved (adding).'}

SOLVED = 0.1         # adding: MSE below 10% of chance is solved (as in long_range)
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
    # a control (MODEL+VARIANT) changes one of the group's settings: its fields win
    for k, v in models.split_variant(p['model'])[1].items():
      c.model[k] = v
  return c


def validate(config) -> None:
  """Groups with published rows, models with published numbers, and each group's own
  sweep checks (its data load; with estimate_only, its stand-in's)."""
  if not config.get('estimate_cpu', True) and not config.get('estimate_only'):
    raise sweep.ConfigError('config.estimate_cpu=False only applies with '
                            'config.estimate_only=True')
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
    # a control MODEL+VARIANT needs its MODEL's published number
    missing = [m for m in g.models if m.partition('+')[0] not in PUBLISHED[name]['values']]
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
    v = value(row)
    print(f'[{next(count)}/{len(todo)}] {name}: '
          f'{"diverged" if v is None else _num(v, row["group"])} ({result["wall_s"]:.0f} s)',
          flush=True)

  jobs.run(config.get('jobs', 1), jobs.train_quiet,
           [(p, (point_config(config, p), os.path.join(workdir, point_name(p))),
             os.path.join(workdir, point_name(p))) for p in todo], on_result)
  return study.finish(sys.modules[__name__], workdir)


def estimate(config, workdir: str) -> list[dict]:
  """For one seed of every (group, model): this machine's step time, measured over
  ESTIMATE_STEPS steps (config.estimate_cpu), and the roofline lower bound of a step on
  each accelerator target (seqlab/measure/roofline.py: FLOPs and HBM bytes against the
  chip's published peaks; data-parallel over a pod's chips), each times the steps and
  the seeds, in hours; written to estimate.md."""
  from seqlab import train
  from seqlab.data import tasks
  from seqlab.measure import roofline
  timed = config.get('estimate_cpu', True)
  targets = list(roofline.TARGETS)
  lines = ['| point | steps x seeds | this CPU: step s, hours | ' +
           ' | '.join(f'{t}: step ms, hours' for t in targets) + ' | scan steps in sequence |',
           '|' + '---|' * (4 + len(targets))]
  totals = defaultdict(float)
  for p in points(config):
    if p['seed'] != config.seeds[0]:
      continue
    c = point_config(config, p, stand_in=True)
    steps, task = int(c.train.steps), tasks.build(c.task)
    runs = steps * len(config.seeds)
    cpu = '(not timed)'
    if timed:
      with c.unlocked():
        c.train.steps, c.train.checkpoint_every, c.train.eval_examples = ESTIMATE_STEPS, 0, 1
      with tempfile.TemporaryDirectory() as tmp:
        r = train.train(c, tmp, verbose=False)
      step_s = c.train.batch_size * task.input_len(p['seq_len']) / r['tokens_per_s']
      totals['cpu'] += step_s * runs / 3600
      cpu = f'{step_s:.3g}, {step_s * runs / 3600:.3g}'
    cells, sequential = [], 0
    for t, cost in roofline.target_costs(c, task, p['seq_len'], targets).items():
      chip, sequential = roofline.TARGETS[t][0], cost.sequential
      if not cost.fits(chip):
        cells.append(f'does not fit: >= {cost.memory / 1e9:.3g} GB a chip')
        continue
      totals[t] += cost.seconds(chip) * runs / 3600
      cells.append(f'{1e3 * cost.seconds(chip):.3g}, {cost.seconds(chip) * runs / 3600:.2g}')
    name = point_name(p) + (f' (on {c.task.name})' if c.task.name != p['task'] else '')
    lines.append(f'| {name} | {steps} x {len(config.seeds)} | {cpu} | ' + ' | '.join(cells)
                 + f' | {sequential:,} |')
    print(lines[-1], flush=True)
  lines.append('| all | | ' + ' | '.join([f'{totals["cpu"]:.3g} h' if timed else '']
                                         + [f'{totals[t]:.2g} h' for t in targets]) + ' | |')
  lines += ['', 'Accelerator columns are roofline lower bounds, not measurements: '
            'max(FLOPs / peak, HBM bytes / bandwidth) per chip ('
            + '; '.join(ch.source for ch in roofline.CHIPS.values()) + '). A scan\'s steps run '
            'one after another, each with a launch and loop cost the bound does not count: '
            'recurrent rows will take far longer than their bound.']
  if writer.is_writer():
    writer.write_text_atomic(os.path.join(workdir, 'estimate.md'), '\n'.join(lines) + '\n')
  print('\n'.join(lines[len(lines) - 3:]))
  return []


# --------------------------------------------------------------------------- reading
def rows(workdir: str) -> list[dict]:
  return [dict(r) for r in writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
          if 'group' in r]


def grouped(rows) -> dict:
  """(group, model) -> that pair's rows over seeds: published models in published order,
  then controls."""
  g = defaultdict(list)
  for r in rows:
    g[(r['group'], r['model'])].append(r)

  def order(key):
    group, model = key
    names = list(PUBLISHED[group]['values'])
    return (list(PUBLISHED).index(group),
            names.index(model) if model in names else len(names), model)
  return {k: g[k] for k in sorted(g, key=order)}


def baselines(rs: list[dict]) -> str:
  """The input-blind baselines of the exact examples scored: for accuracy the uniform
  guess, always the training split's majority class, and the scored examples' own
  majority class; for a loss the chance loss."""
  r0 = rs[0]
  if _kind(r0['group']) != 'accuracy':
    return f'chance {r0["chance_loss"]:.3g}'
  bits = []
  for key, word in (('uniform_accuracy', 'uniform'), ('train_majority_accuracy', 'train majority'),
                    ('majority_accuracy', 'majority of the examples scored')):
    if r0.get(key) is not None:
      bits.append(f'{word} {100 * r0[key]:.1f}%')
  return ', '.join(bits) or '-'


def table(rows: list[dict]) -> str:
  if not rows:
    return '(no results)'
  lines = ['| row | model | paper (T, steps) | seqlab [95% CI] (seeds) | seqlab task, T, steps '
           '| input-blind baselines | verdict |', '|---|---|---|---|---|---|---|']
  for (group, model), rs in grouped(rows).items():
    pub, c = PUBLISHED[group], compare(rs)
    paper = ('-' if c['paper'] is None else
             f'{_num(c["paper"], group)} (T={pub["t"]}, {pub["steps"]:,})')
    lines.append(f'| {group} ({pub["metric"]}) | {model} | {paper} | '
                 f'{_iv(c["interval"], group)} ({c["seeds"]}) | {rs[0]["task"]}, '
                 f'T={rs[0]["seq_len"]}, {rs[0]["steps"]} | {baselines(rs)} | '
                 f'{c["verdict"]}: {c["why"]} |')
  if all(compare(rs)['verdict'] in ('not comparable', 'control')
         for rs in grouped(rows).values()):
    lines.append('\nNo row here ran the paper\'s T, data and step budget: this table is a smoke '
                 'test of the papers\' ordering of the models (the claims below), not a '
                 'comparison of numbers.')
  lines.append(f'\nA comparable row agrees when the published number lies within seqlab\'s 95% '
               f'interval widened by {100 * TOLERANCE["accuracy"]:.0f} accuracy points, or a '
               f'factor {math.exp(TOLERANCE["loss"]):.2f} for a loss. Paper: ' +
               '; '.join(sorted({f'{g} {p["source"]}' for g, p in PUBLISHED.items()
                                 if any(r['group'] == g for r in rows)})) + '.')
  return '\n'.join(lines)


def draw(workdir: str) -> list[str]:
  rs = rows(workdir)
  return figure(rs, os.path.join(workdir, 'figures', 'paper')) if rs else []


def figure(rows: list[dict], out_stem: str) -> list[str]:
  """One panel per group in the paper's own metric: the published number (open circle)
  and seqlab's mean with its 95% interval (filled, bar) for each model; dashed: the
  input-blind baseline; dotted (adding): solved, 0.1 x chance."""
  import matplotlib.pyplot as plt
  plot_style.apply()
  g = grouped(rows)
  groups = list(dict.fromkeys(grp for grp, _ in g))
  fig, axes = plt.subplots(1, len(groups), figsize=(max(3.4, 1.6 * len(groups) + 0.6), 2.6),
                           squeeze=False)
  for ax, group in zip(axes[0], groups):
    names = [m for grp, m in g if grp == group]
    acc = _kind(group) == 'accuracy'
    k = 100 if acc else 1
    for i, m in enumerate(names):
      rs = g[(group, m)]
      c = compare(rs)
      if c['paper'] is not None:
        ax.plot([i - 0.15], [k * c['paper']], 'o', mfc='none', mew=1.2, color=plot_style.color(m))
      iv = c['interval']
      if math.isfinite(iv.value):
        lo = max(iv.lo, 1e-9) if not acc else iv.lo
        ax.errorbar([i + 0.15], [k * iv.value], yerr=[[k * (iv.value - lo)], [k * (iv.hi - iv.value)]],
                    fmt='s', ms=4, color=plot_style.color(m), capsize=2)
    r0 = g[(group, names[0])][0]
    if acc:
      base = r0.get('uniform_accuracy')
      if base is not None:
        ax.axhline(100 * base, color='k', lw=0.8, ls='--')
      ax.set_ylim(0, 100)
      ax.set_ylabel('accuracy (%)' if group == groups[0] else '')
    else:
      ax.set_yscale('log')
      ax.axhline(r0['chance_loss'], color='k', lw=0.8, ls='--')
      if group == 'adding':
        ax.axhline(SOLVED * r0['chance_loss'], color='k', lw=0.6, ls=':')
      # a bar whose interval reaches 0 runs off the bottom edge
      shown = [v for m in names for v in (compare(g[(group, m)])['interval'].value,
                                          PUBLISHED[group]['values'].get(m)) if v and v > 0]
      ax.set_ylim(min(shown + [r0['chance_loss']]) / 4, 2 * max(shown + [r0['chance_loss']]))
      plot_style.dense_log_labels(ax)
      ax.set_ylabel(PUBLISHED[group]['metric'])
    ax.set_xticks(range(len(names)), [m.replace('+', '\n+') for m in names], fontsize=6)
    ax.set_xlim(-0.6, len(names) - 0.4)
    where = 'T=' + str(r0['seq_len']) if r0['task'] == PUBLISHED[group]['task'] else \
        f'{r0["task"]} T={r0["seq_len"]}'
    ax.set_title(f'{group}\n({where})', fontsize=7)
  handles = [plt.Line2D([], [], marker='o', mfc='none', mew=1.2, color='0.3', ls='',
                        label='paper (its own T)'),
             plt.Line2D([], [], marker='s', ms=4, color='0.3', ls='', label='seqlab, 95% CI'),
             plt.Line2D([], [], color='k', lw=0.8, ls='--', label='input-blind baseline'),
             plt.Line2D([], [], color='k', lw=0.6, ls=':', label='solved (0.1 x chance)')]
  fig.legend(handles=handles, loc='center left', bbox_to_anchor=(1.0, 0.5))
  fig.tight_layout()
  return plot_style.save(fig, out_stem)


# ---------------------------------------------------------------------------- claims
def pair_part(rows, group: str, a: str, b: str) -> stats.Part:
  """'the paper's relation of a to b holds in seqlab' as a three-outcome part."""
  g = grouped(rows)
  tol = TOLERANCE[_kind(group)]
  want = _relation(paper_score(group, a) - paper_score(group, b), tol)
  name = f'{a} {WORDS[want]} {b} (paper: {_num(PUBLISHED[group]["values"][a], group)} vs ' \
         f'{_num(PUBLISHED[group]["values"][b], group)})'
  if (group, a) not in g or (group, b) not in g:
    return stats.missing(name)
  d = stats.difference(score_ci(g[(group, a)]), score_ci(g[(group, b)]))
  rule = ('score(a) - score(b) ' + {'>': '> 0', '<': '< 0', '=': f'within +-{tol:.3g}'}[want] +
          (' (score: -log loss)' if _kind(group) == 'loss' else ''))
  outcome = judge(want, d, tol)
  if outcome == stats.HOLDS:
    return stats.Part(name, outcome, d.fmt('+.3g'), rule)
  if outcome == stats.UNDECIDED:
    return stats.Part(name, outcome, d.fmt('+.3g'), rule,
                      stats._needed(d, max(abs(d.value), tol)))
  got = seqlab_relation(d, tol)
  return stats.Part(name, outcome, d.fmt('+.3g'), rule,
                    f'reversed (seqlab: {a} {WORDS.get(got, "?")} {b}); ' +
                    cause(rows, group, a, b, d.value - (paper_score(group, a) -
                                                        paper_score(group, b))))


def cause(rows, group: str, a: str, b: str, shift: float) -> str:
  """The likely cause of a reversed pair, from its direction: `shift` is how much
  score(a) - score(b) moved from the paper's. The model that moved that way by more than
  the tolerance (a up or b down) is named, better or worse than its published number;
  a better one at a shorter T is put down to the shorter sequence; a worse one to a
  control of it that does better on the same data (the setting the control changes), or
  else to the smaller budget, or said unexplained."""
  g = grouped(rows)
  pub = PUBLISHED[group]
  tol = TOLERANCE[_kind(group)]
  diffs = differences(g[(group, a)])
  shorter = [d for d in diffs if d.startswith('T=')]
  budget = [d for d in diffs if 'steps' in d]
  movers = []
  for m, sign in ((a, 1), (b, -1)):
    moved = score_ci(g[(group, m)]).value - paper_score(group, m)
    if moved * sign * (1 if shift > 0 else -1) > tol:
      movers.append((m, moved > 0))
  if not movers:
    return 'neither model moved from its published number by more than the tolerance'
  bits, why = [], []
  for m, better in movers:
    iv = value_ci(g[(group, m)])
    bits.append(f'{m} {"better" if better else "worse"} than in the paper '
                f'({_iv(iv, group)} vs {_num(pub["values"][m], group)})')
    if better:
      why.append(f'a shorter sequence ({shorter[0]}) makes the task easier for {m}' if shorter
                 else f'no difference of setting here explains {m} doing better')
      continue
    controls = [k[1] for k in g if k[0] == group and k[1].partition('+')[0] == m
                and '+' in k[1]]
    told = False
    for ctl in controls:
      d = stats.difference(score_ci(g[(group, ctl)]), score_ci(g[(group, m)]))
      if d.lo > 0:
        fields = ', '.join(f'{k}={v}' for k, v in models.split_variant(ctl)[1].items())
        why.append(f'the control {ctl} ({fields}) does better on the same data '
                   f'({_iv(value_ci(g[(group, ctl)]), group)}): the setting it changes')
        told = True
    if not told:
      why.append(f'{m} doing worse is not explained by a shorter T; ' +
                 (f'the budget ({budget[0]})' if budget else 'no control run here tells why'))
  return '; '.join(bits) + '. Likely: ' + '; '.join(why)


def _where(rows, group) -> str:
  rs = [r for r in rows if r['group'] == group]
  return (f'{rs[0]["task"]} T={rs[0]["seq_len"]}, {rs[0]["steps"]} steps, '
          f'{len({r["seed"] for r in rs})} seed(s), lr {rs[0].get("lr", "?")}')


def claims(rows) -> list[study.Claim]:
  out = []
  groups = list(dict.fromkeys(grp for grp, _ in grouped(rows)))
  for group in groups:
    pub = PUBLISHED[group]
    ran = [m for m in pub['values'] if any(r['group'] == group and r['model'] == m
                                          for r in rows)]
    comparable = [compare(rs) for (grp, m), rs in grouped(rows).items()
                  if grp == group and m in pub['values']]
    if len(pub['values']) > 1:
      parts = [pair_part(rows, group, a, b) for i, a in enumerate(pub['values'])
               for b in list(pub['values'])[i + 1:]]
      out.append(study.claim(
          f'{group} ({pub["source"]}): the paper\'s ordering of the models '
          f'({order_text(group)}; ~: level within the tolerance) holds in seqlab.', parts,
          f'Pairs compared on the interval of the difference (accuracy, or -log loss), 95%, '
          f'Welch; tolerance {TOLERANCE[_kind(group)]:.3g}. {_where(rows, group)}. ' +
          ('Not comparable to the published numbers (' + ', '.join(
              comparable[0]['differs_in']) + '): the ordering alone is judged.'
           if comparable and comparable[0]['differs_in'] else '')))
    if group == 'listops' and ran:
      rs = grouped(rows)[(group, 'transformer')]
      maj = rs[0].get('majority_accuracy')
      out.append(study.claim(
          f'ListOps (LRA: {100 * pub["values"]["transformer"]:.2f}%): the transformer beats the '
          f'majority class of the examples it is scored on.',
          [stats.above('transformer above the majority class', value_ci(rs), maj,
                       spec='.3f', rule=f'> {maj:.3f}') if maj is not None
           else stats.missing('transformer above the majority class', 'no majority recorded')],
          f'Accuracy mean over seeds, 95% interval. {_where(rows, group)}.'))
    agree = [(m, c) for m, c in zip(ran, comparable) if c['verdict'] in ('agrees', 'differs')]
    if agree:
      out.append(study.claim(
          f'{group}: seqlab reproduces the published numbers ({pub["source"]}) within the '
          f'tolerance.',
          [stats.Part(f'{m} agrees with {_num(c["paper"], group)}',
                      stats.HOLDS if c['verdict'] == 'agrees' else stats.FAILS,
                      _iv(c['interval'], group), 'the paper within the interval + tolerance',
                      '' if c['verdict'] == 'agrees' else c['why']) for m, c in agree],
          f'{_where(rows, group)}.'))
  return out
