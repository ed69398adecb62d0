"""A finished (or interrupted) point, back from its folder: its model with trained
parameters for a notebook, or its held-out metrics measured again.

  from seqlab import load
  model, params, config = load('runs/long_range/lstm-adding-T50-lr0.01-s0')   # best checkpoint
  outputs = model(inputs)                                              # an nnx model

  python launch.py --evaluate=runs/long_range/lstm-adding-T50-lr0.01-s0 [--checkpoint=latest]

A point folder holds the config.json the training loop wrote and checkpoints/ (orbax);
nothing in it is changed here (the checkpoints are opened read-only). The model is
rebuilt from that config exactly as seqlab.train builds it.
"""
from __future__ import annotations

import math
import os

CHECKPOINTS = ('best', 'latest')


class LoadError(ValueError):
  """A folder that is not a trained point, or a checkpoint it lacks: one line."""


def _config(point_dir: str):
  import ml_collections
  from seqlab.infra import storage, writer
  path = os.path.join(point_dir, 'config.json')
  ckpts = os.path.join(point_dir, 'checkpoints')
  if not storage.exists(path) or not storage.isdir(ckpts):
    raise LoadError(f'{point_dir} is not a trained point (it needs config.json and '
                    f'checkpoints/); give a point folder such as '
                    f'runs/long_range/lstm-adding-T50-lr0.01-s0')
  return ml_collections.ConfigDict(writer.read_json(path))


def restore(point_dir: str, checkpoint: str = 'best'):
  """(graphdef, state, step, config, task): the train state saved in `point_dir`'s
  best (lowest VALID loss; the latest when none has one) or latest checkpoint."""
  import jax
  from seqlab import train
  from seqlab.data import tasks
  from seqlab.infra import checkpoint as ckpt_lib
  if checkpoint not in CHECKPOINTS:
    raise LoadError(f'checkpoint={checkpoint!r}; allowed: {", ".join(CHECKPOINTS)}')
  config = _config(point_dir)
  task = tasks.build(config.task)
  cfg = train.model_config(config, task, int(config.task.seq_len))
  graphdef, state = train.init_state(cfg, int(config.seed), train.make_optimizer(config.train))
  mgr = ckpt_lib.CheckpointManager(os.path.join(point_dir, 'checkpoints'), every=0,
                                   read_only=True)
  try:
    steps = mgr.all_steps()
    if not steps:
      raise LoadError(f'{point_dir} has no checkpoint yet (checkpoints/ is empty)')
    step = (mgr.best_step() if checkpoint == 'best' else None) or mgr.latest_step()
    state = mgr.restore(step, ckpt_lib.abstract(state))
  finally:
    mgr.close()
  return graphdef, jax.device_get(state), int(step), config, task


def load(point_dir: str, checkpoint: str = 'best'):
  """(model, params, config) of a trained point: an nnx model holding the restored
  parameters, ready to call on inputs [B, T] (tokens) or [B, T, D] (features); the
  parameters as a pytree (nnx.State); the point's ConfigDict."""
  from flax import nnx
  graphdef, state, _, config, _ = restore(point_dir, checkpoint)
  return nnx.merge(graphdef, state['params']), state['params'], config


def evaluate(point_dir: str, checkpoint: str = 'best', examples: int | None = None) -> dict:
  """EVAL metrics of a point's checkpoint (the best is chosen on the VALID split, so the
  numbers reported here were not used to choose it) over `examples` held-out examples
  (default: the whole held-out split of a data set, train.eval_examples of a generated
  task), with the chance level and the baselines of the examples scored."""
  import jax
  from seqlab import train
  from seqlab.infra import sharding
  graphdef, state, step, config, task = restore(point_dir, checkpoint)
  seq_len = int(config.task.seq_len)
  mesh = sharding.make_mesh(1)
  tx = train.make_optimizer(config.train)
  compiled = train.compile_steps(graphdef, state, task, tx, mesh)
  params = jax.device_put(state['params'], compiled.state_sharding['params'])
  metrics = train.evaluate(compiled, params, task, config, seq_len, int(config.seed),
                           examples=examples)
  return {'step': step, 'checkpoint': checkpoint, 'chance_loss': task.chance_loss(seq_len),
          **{k: v for k, v in metrics.items()
             if isinstance(v, (int, float)) and math.isfinite(v)}}
