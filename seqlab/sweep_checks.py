"""The checks of a sweep beyond its ranges (seqlab.sweep.validate calls them before
anything is written): the names of its points and the config's own skip patterns, every
swept model buildable with the config, and the attention widths of the studies that
build their own layers. Each problem is one ConfigError line."""
from __future__ import annotations

import fnmatch
import itertools

from seqlab import models
from seqlab.sweep import ConfigError, point_config, point_name


def sweep_names(sw) -> list[str]:
  """The name of every point of the sweep's axes (every lr of sweep.lrs, every seed),
  before sweep.skip: the names --skip and --rerun may name."""
  lrs = [float(lr) for lr in sw.get('lrs', ())] or [None]
  return [point_name(dict(model=m, task=t, seq_len=int(n), seed=int(x),
                          **({} if lr is None else {'lr': lr})))
          for t, n, m, lr, x in itertools.product(sw.tasks, sw.seq_lens, sw.models, lrs,
                                                  sw.seeds)]


def drop_default_skips(config) -> list[str]:
  """Drops the patterns of sweep.skip that match no point of the sweep and returns them.
  For the config file's own sweep.skip only (launch.py calls it when --skip is not
  given): a default such as 'transformer-*-s3' must not refuse a sweep narrowed with
  --models; a user's own --skip that matches nothing is validate's error."""
  sw = config.get('sweep')
  if sw is None or not sw.get('skip') or not (sw.models and sw.tasks and sw.seq_lens
                                              and sw.seeds):
    return []
  names = sweep_names(sw)
  dropped = [pat for pat in sw.skip if not fnmatch.filter(names, pat)]
  if dropped:
    with config.unlocked():
      config.sweep.skip = [pat for pat in sw.skip if pat not in dropped]
  return dropped


def _quantum_hint(hidden: int, heads: int) -> str:
  lo = max(heads, hidden // heads * heads)
  return f'e.g. {lo} or {lo + heads}'


def check_models_build(config, built: dict) -> None:
  """Every swept model builds with this config, before anything is written: the
  transformer's width divides into its heads, and each (model, task) constructs
  abstractly (flax's eval_shape: no memory, ~0.05 s each), so a setting the model code
  rejects is one ConfigError here, not a traceback mid-sweep. With model.param_budget
  the width is the budget's (a multiple of 2 x heads), so the given one is not checked."""
  from seqlab import train
  mc, sw = config.model, config.sweep
  budget = mc.get('param_budget', 0)
  for m in sw.models:
    name = models.split_name(m)[0]
    if name == 'transformer' and not budget and mc.hidden % mc.heads:
      raise ConfigError(f'model.hidden={mc.hidden} is not divisible by model.heads={mc.heads} '
                        f'(the transformer splits its width into equal heads); use a multiple '
                        f'of {mc.heads} ({_quantum_hint(mc.hidden, mc.heads)}) or other heads')
    for t, task in built.items():
      n = min(int(x) for x in sw.seq_lens)
      c = point_config(config, dict(model=m, task=t, seq_len=n))
      with c.unlocked():
        if budget:   # the smallest width size_to_budget tries
          c.model.hidden = 2 * c.model.heads if name == 'transformer' else 2
          c.model.param_budget = 0
      try:
        models.num_params(train.model_config(c, task, n))
      except Exception as e:  # the model code's own message, on one line
        why = ' '.join(str(e).split())[:300] or type(e).__name__
        raise ConfigError(f'model {m!r} cannot be built for task {t!r} with this config: '
                          f'{why}; check the model.* settings (--list shows them)') from None


def check_widths(config) -> None:
  """The transformer's width divides into its heads in the settings of the studies that
  build one from their own group (bench, generation), when the sweep has one."""
  swept = [str(m) for m in config.get('sweep', {}).get('models', ())]
  if not any('attention' in m or 'transformer' in m for m in swept):   # torch_attention too
    return
  for group in ('bench', 'generation'):
    g = config.get(group)
    if g is None or 'hidden' not in g or 'heads' not in g or not g.heads:
      continue
    if g.hidden % g.heads:
      raise ConfigError(f'{group}.hidden={g.hidden} is not divisible by {group}.heads='
                        f'{g.heads} (attention splits its width into equal heads); use a '
                        f'multiple of {g.heads} ({_quantum_hint(g.hidden, g.heads)})')
