"""The one training loop, for every model and task.

The train step is a pure function of (state, batch) -> (state, metrics), jitted in
one place (`compile_steps`) with its shardings and donation stated there. State is
a plain pytree {'params', 'opt_state', 'step'}; the model is rebuilt inside the
step with `nnx.merge` (flax NNX's functional API).
"""
from __future__ import annotations

import dataclasses
import math
import os
import sys
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from seqlab import models
from seqlab.data import tasks
from seqlab.infra import checkpoint, preemption, sharding, writer
from seqlab.progress import Progress

Array = jax.Array


# ------------------------------------------------------------------------------ config
def model_config(config, task: tasks.Task, seq_len: int) -> models.ModelConfig:
  """ModelConfig from config.model plus what the task dictates; sized to
  config.model.param_budget when that is > 0."""
  fields = {f.name for f in dataclasses.fields(models.ModelConfig)}
  given = {k: v for k, v in config.model.items() if k in fields}
  cfg = models.ModelConfig(**{
      **given,
      'vocab_size': task.vocab_size, 'input_dim': task.input_dim,
      'num_outputs': task.num_outputs, 'readout': task.readout,
      'max_len': task.input_len(seq_len) + 1})
  budget = config.model.get('param_budget', 0)
  return models.size_to_budget(cfg, budget) if budget else cfg


def make_optimizer(tc) -> optax.GradientTransformation:
  """AdamW with linear warm-up and cosine decay; optional global-norm clipping."""
  warmup = min(tc.warmup_steps, max(tc.steps - 1, 0))
  schedule = optax.warmup_cosine_decay_schedule(
      0.0, tc.lr, warmup_steps=warmup, decay_steps=max(tc.steps, warmup + 1),
      end_value=tc.lr * tc.get('final_lr_fraction', 0.0))
  parts = []
  if tc.clip_norm and tc.clip_norm > 0:
    parts.append(optax.clip_by_global_norm(tc.clip_norm))
  parts.append(optax.adamw(schedule, b1=0.9, b2=0.999, weight_decay=tc.weight_decay))
  tx = optax.chain(*parts)
  skip = int(tc.get('skip_nonfinite', 0))
  if skip > 0:
    # Drop an update whose gradients are not finite (optimiser state kept); after
    # `skip` bad updates in a row it is applied, the parameters go non-finite and the
    # run stops as diverged: a bounded number of skips, never a silent NaN run.
    tx = optax.apply_if_finite(tx, max_consecutive_errors=skip)
  return tx


# ------------------------------------------------------------------------------- steps
def make_train_step(graphdef, task: tasks.Task, tx: optax.GradientTransformation):
  def train_step(state, batch):
    def loss_fn(params):
      outputs = models.merge(graphdef, params)(batch['inputs'])   # compute dtype
      return tasks.loss_and_metrics(task, outputs, batch)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'])
    updates, opt_state = tx.update(grads, state['opt_state'], state['params'])
    params = optax.apply_updates(state['params'], updates)
    metrics = dict(metrics,
                   grad_norm=optax.tree.norm(grads),
                   param_norm=optax.tree.norm(params),
                   update_norm=optax.tree.norm(updates))
    metrics['finite'] = jnp.isfinite(loss) & jnp.isfinite(metrics['grad_norm'])
    # Each parameter, not the norm: a norm of large finite weights may overflow.
    metrics['params_finite'] = jnp.all(jnp.array(
        [jnp.isfinite(x).all() for x in jax.tree.leaves(params)]))
    return {'params': params, 'opt_state': opt_state, 'step': state['step'] + 1}, metrics

  return train_step


def make_eval_step(graphdef, task: tasks.Task):
  def eval_step(params, batch):
    outputs = models.merge(graphdef, params)(batch['inputs'])
    return tasks.loss_and_metrics(task, outputs, batch)[1]

  return eval_step


@dataclasses.dataclass
class Compiled:
  train_step: callable
  eval_step: callable
  state_sharding: object
  mesh: object


def compile_steps(graphdef, state, task, tx, mesh) -> Compiled:
  """The one place the steps are jitted: state replicated, batch split over 'data',
  the old state donated so its buffers are reused."""
  repl = sharding.replicated(mesh)
  state_sh = jax.tree.map(lambda _: repl, state)
  batch_sh = sharding.data_sharded(mesh)
  train_step = jax.jit(make_train_step(graphdef, task, tx),
                       in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, repl),
                       donate_argnums=0)
  eval_step = jax.jit(make_eval_step(graphdef, task),
                      in_shardings=(state_sh['params'], batch_sh), out_shardings=repl)
  return Compiled(train_step, eval_step, state_sh, mesh)


def init_state(cfg: models.ModelConfig, seed: int, tx):
  model = models.build(cfg, seed)
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, {'params': params, 'opt_state': tx.init(params),
                    'step': jnp.zeros((), jnp.int32)}


def evaluate(compiled, params, task, config, seq_len, seed, split=tasks.EVAL) -> dict:
  tc = config.train
  sums = {}
  for i in range(tc.eval_batches):
    batch = task.batch(seed, i, tc.batch_size, seq_len, split=split)
    m = jax.device_get(compiled.eval_step(params, sharding.place_batch(batch, compiled.mesh)))
    for k, v in m.items():
      sums[k] = sums.get(k, 0.0) + float(v) / tc.eval_batches
  return sums


# ------------------------------------------------------------------------------- loop
def _none_if_nan(x):
  return None if x is None or not math.isfinite(x) else float(x)


def train(config, workdir: str, *, verbose: bool = True, return_params: bool = False):
  """Trains config.model on config.task at config.task.seq_len; writes config.json,
  metrics.jsonl and result.json in `workdir` and returns the result (and, with
  return_params, also the graphdef and trained params for diagnostics)."""
  t_start = time.time()
  task = tasks.build(config.task)
  seq_len = int(config.task.seq_len)
  seed = int(config.seed)
  tc = config.train
  cfg = model_config(config, task, seq_len)
  mesh = sharding.make_mesh(config.get('num_devices', 0) or None)
  sharding.check_batch_size(tc.batch_size, mesh)
  if writer.is_writer():
    writer.write_json(os.path.join(workdir, 'config.json'), config.to_dict())

  tx = make_optimizer(tc)
  graphdef, state = init_state(cfg, seed, tx)
  n_params = models.count_params(state['params'])
  compiled = compile_steps(graphdef, state, task, tx, mesh)
  state = jax.device_put(state, compiled.state_sharding)
  chance = task.chance_loss(seq_len)
  tokens_per_step = tc.batch_size * task.input_len(seq_len)
  say = print if (verbose and writer.is_writer()) else (lambda *a, **k: None)
  tag = f'[{cfg.name} on {task.name}, T={seq_len}, seed={seed}]'
  # Resume: the newest checkpoint that restores; data and randomness are functions of
  # (seed, step), so the continued run is bitwise the uninterrupted one.
  ckpt = checkpoint.CheckpointManager(
      os.path.join(workdir, 'checkpoints'), every=tc.get('checkpoint_every', 0),
      keep=tc.get('keep_checkpoints', 2),
      log=print if writer.is_writer() else (lambda *a, **k: None))
  restored = ckpt.restore_latest(checkpoint.abstract(state))
  if restored is not None:
    state, _ = restored
    say(f'{tag} resuming from checkpoint step {int(jax.device_get(state["step"]))}')
  if writer.is_writer():  # drop metrics logged after the restored step: no duplicates
    writer.truncate_jsonl(os.path.join(workdir, 'metrics.jsonl'),
                          int(jax.device_get(state['step'])))
  log = writer.MetricWriter(workdir, tensorboard=tc.get('tensorboard', False))
  say(f'{tag} {n_params:,} params, '
      f'hidden={cfg.hidden}, chance loss {chance:.4f} ({task.chance_doc})')

  def batch_at(step):
    return sharding.place_batch(task.batch(seed, step, tc.batch_size, seq_len), mesh)

  # Dispatch step s, then read step s-1's metrics: the host never waits on the
  # device just to log, so data for the next step is made while this one runs.
  pending = None
  first_step = int(jax.device_get(state['step']))
  progress = Progress(tc.steps, first_step, tokens_per_step, say)
  diverged = None  # (step, quantity) of the first non-finite update
  skip = int(tc.get('skip_nonfinite', 0))

  def val_loss(params):
    loss = evaluate(compiled, params, task, config, seq_len, seed)['loss']
    return {'eval_loss': loss} if math.isfinite(loss) else None

  def log_pending():
    return _log_step(log, say, *pending, chance, progress, tc, skip)

  with preemption.Preemption(notice=print if writer.is_writer() else say) as stop:
    for step in range(first_step, tc.steps):
      state, metrics = compiled.train_step(state, batch_at(step))
      if step == first_step:  # wait once: the steady-state clock starts after compile
        jax.block_until_ready(metrics['loss'])
        progress.compiled()
      if pending is not None:
        diverged = log_pending()
        if diverged:
          break
      pending = (step, metrics)
      if (step + 1) % tc.log_every == 0 or step + 1 == tc.steps:
        jax.block_until_ready(metrics['loss'])
        progress.measured(step + 1)
      if ckpt.should_save(step + 1) or stop.requested:
        # Only a state whose update was finite is saved: log (and check) it first.
        diverged = log_pending()
        pending = None
        if diverged:
          break
        with progress.paused():
          log.flush()  # a bucket's metrics.jsonl is rewritten, not appended: keep it current
          ckpt.save(step + 1, state, val_loss(state['params']))
        if stop.requested:
          log.close()
          ckpt.close()
          line = (f'{tag} {stop.name}: saved checkpoint at step {step + 1}; run the same '
                  f'command to resume')
          if stop.exit_status():  # Ctrl-C: the one line on stderr
            print(f'interrupted: {line}', file=sys.stderr, flush=True)
          else:
            say(line, flush=True)
          sys.exit(stop.exit_status())
    if pending is not None and not diverged:
      diverged = log_pending()

  if diverged:
    last_good = ckpt.latest_step()
    print(f'{tag} diverged: non-finite {diverged[1]} at step {diverged[0]}; stopped, last good '
          f'checkpoint: {"none" if last_good is None else f"step {last_good}"}',
          file=sys.stderr, flush=True)
    ev = va = {'loss': float('nan'), 'accuracy': float('nan')}
  else:
    ev = evaluate(compiled, state['params'], task, config, seq_len, seed)
    # The lr is chosen on VALID, apart from the EVAL numbers that are reported.
    va = (evaluate(compiled, state['params'], task, config, seq_len, seed, tasks.VALID)
          if task.validation else ev)
    log.write(tc.steps, {'eval_loss': ev['loss'], 'eval_accuracy': ev['accuracy']})
    log.flush()
    ckpt.save(tc.steps, state,
              {'eval_loss': ev['loss']} if math.isfinite(ev['loss']) else None)
  ckpt.close()
  log.close()
  result = {
      'model': cfg.name, 'task': task.name, 'seq_len': seq_len, 'seed': seed,
      'hidden': cfg.hidden, 'num_params': n_params, 'steps': int(tc.steps),
      'final_loss': _none_if_nan(ev['loss']),
      'final_accuracy': _none_if_nan(ev['accuracy']),
      'valid_loss': _none_if_nan(va['loss']), 'lr': float(tc.lr),
      'valid_split': 'valid' if task.validation else 'eval',
      'chance_loss': chance, 'wall_s': time.time() - t_start,
      'majority_accuracy': (task.majority_accuracy(seq_len) if task.majority_accuracy
                            else None),
      'tokens_per_s': _none_if_nan(progress.tokens_per_s),
      'compile_s': progress.compile_s,
      'diverged_at_step': diverged[0] if diverged else None,
  }
  if not diverged:
    say(f'{tag} held-out loss {ev["loss"]:.4f} vs chance {chance:.4f}; '
        f'done in {result["wall_s"]:.1f}s')
  if writer.is_writer():
    writer.write_json(os.path.join(workdir, 'result.json'), result)
  if stop.requested:  # the signal came after the last step: this point is done, stop here
    line = f'{tag} {stop.name}: finished this point; run the same command to go on'
    print(f'interrupted: {line}' if stop.exit_status() else line,
          file=sys.stderr if stop.exit_status() else sys.stdout, flush=True)
    sys.exit(stop.exit_status())
  if return_params:
    return result, graphdef, jax.device_get(state['params'])
  return result


def _log_step(log, say, step, metrics, chance, progress, tc, skip=0):
  """Writes step's metrics; returns (step, quantity) when its update was not finite.
  With skip_nonfinite > 0 a skipped bad update is not a divergence; a non-finite
  parameter (more than `skip` bad updates in a row) is."""
  m = {k: float(v) for k, v in jax.device_get(metrics).items()}
  m['chance_loss'] = chance
  m['tokens_per_s'] = progress.tokens_per_s
  log.write(step + 1, m)
  bad = [q for q, ok in (('loss', math.isfinite(m['loss'])),
                         ('gradient norm', math.isfinite(m['grad_norm'])),
                         ('parameters', m['params_finite'] > 0)) if not ok]
  if skip > 0:
    bad = [q for q in bad if q == 'parameters']
  if bad:
    return step + 1, ' and '.join(bad)
  if (step + 1) % tc.log_every == 0 or step + 1 == tc.steps:
    acc = '' if not math.isfinite(m['accuracy']) else f' acc {m["accuracy"]:.3f}'
    say(f'  step {step + 1:>6}/{tc.steps} loss {m["loss"]:.4f} (chance {chance:.4f}){acc} '
        f'|g| {m["grad_norm"]:.3g} {progress.line(step + 1)}', flush=True)
