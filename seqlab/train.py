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
import numpy as np
import optax
from flax import nnx

from seqlab import models
from seqlab.data import tasks
from seqlab.infra import checkpoint, preemption, sharding, storage, writer
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
def make_loss_fn(graphdef, task: tasks.Task):
  """(params, batch) -> (loss, metrics): what the train step differentiates."""
  def loss_fn(params, batch):
    outputs = models.merge(graphdef, params)(batch['inputs'])   # compute dtype
    return tasks.loss_and_metrics(task, outputs, batch)

  return loss_fn


def make_train_step(graphdef, task: tasks.Task, tx: optax.GradientTransformation):
  loss_fn = make_loss_fn(graphdef, task)

  def train_step(state, batch):
    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state['params'], batch)
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
  """(params, batch) -> each example's loss sum, scored positions and correct ones ([B]
  each; tasks.per_example): the evaluation weighs and sums them on the host."""
  def eval_step(params, batch):
    outputs = models.merge(graphdef, params)(batch['inputs'])
    return tasks.per_example(task, outputs, batch)

  return eval_step


def under_mesh(mesh, fn):
  """fn traced with `mesh` as the abstract mesh in context: a kernel XLA cannot
  partition (Pallas' Mosaic attention) reads it and runs per device (shard_map)."""
  abstract = getattr(mesh, 'abstract_mesh', mesh)

  def traced(*args):
    with jax.sharding.use_abstract_mesh(abstract):
      return fn(*args)

  return traced


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
  train_step = jax.jit(under_mesh(mesh, make_train_step(graphdef, task, tx)),
                       in_shardings=(state_sh, batch_sh), out_shardings=(state_sh, repl),
                       donate_argnums=0)
  eval_step = jax.jit(under_mesh(mesh, make_eval_step(graphdef, task)),
                      in_shardings=(state_sh['params'], batch_sh), out_shardings=repl)
  return Compiled(train_step, eval_step, state_sh, mesh)


def init_state(cfg: models.ModelConfig, seed: int, tx):
  model = models.build(cfg, seed)
  graphdef, params = nnx.split(model, nnx.Param)
  return graphdef, {'params': params, 'opt_state': tx.init(params),
                    'step': jnp.zeros((), jnp.int32)}


def held_out_examples(task: tasks.Task, config, seq_len: int, split=tasks.EVAL) -> int:
  """How many examples an evaluation of `split` scores: the whole split of a finite data
  set, each example once; train.eval_examples fresh ones of a generated task."""
  if task.held_out_size is not None:
    return int(task.held_out_size(split, seq_len))
  return int(config.train.get('eval_examples', 2048))


def evaluate(compiled, params, task, config, seq_len, seed, split=tasks.EVAL,
             examples: int | None = None) -> dict:
  """Held-out metrics over `examples` examples of `split` (default: held_out_examples):
  batch i holds examples [i B, (i + 1) B), the tail past the last example weighs 0.

  Returns loss (the mean over scored positions), loss_se (its standard error from the
  per-example losses: a ratio estimator, sum over examples of (l_i - loss n_i)^2, for
  per-step losses), accuracy and accuracy_se likewise, examples; for classification the
  baselines of the exact examples scored: majority_accuracy (the most common class among
  them), label_entropy (nats: the loss of the best constant guess), uniform_accuracy
  (1 / classes) and, for tasks on data, train_majority_accuracy (always answering the
  training split's most common class)."""
  bs = int(config.train.batch_size)
  n = examples or held_out_examples(task, config, seq_len, split)
  loss_sum, count, correct, targets = [], [], [], []
  for i in range(-(-n // bs)):
    batch = task.batch(seed, i, bs, seq_len, split=split)
    m = jax.device_get(compiled.eval_step(params, sharding.place_batch(batch, compiled.mesh)))
    keep = min(bs, n - i * bs)           # the wrapped tail of the last batch is not scored
    loss_sum.append(np.asarray(m['loss_sum'], np.float64)[:keep])
    count.append(np.asarray(m['count'], np.float64)[:keep])
    correct.append(np.asarray(m['correct'], np.float64)[:keep])
    if task.classification:
      targets.append(np.asarray(batch['targets'])[:keep])
  loss_sum, count, correct = (np.concatenate(x) for x in (loss_sum, count, correct))
  total = max(count.sum(), 1.0)

  def mean_se(values):
    mean = float(values.sum() / total)
    if len(values) < 2:
      return mean, float('nan')
    resid = values - mean * count           # the ratio estimator's residuals
    return mean, float(np.sqrt((resid ** 2).sum() * len(values) / (len(values) - 1)) / total)

  loss, loss_se = mean_se(loss_sum)
  out = {'loss': loss, 'loss_se': loss_se, 'examples': int(n)}
  if task.loss_type == 'mse':
    out.update(accuracy=float('nan'), accuracy_se=float('nan'))
  else:
    out['accuracy'], out['accuracy_se'] = mean_se(correct)
  if task.classification:
    y = np.concatenate(targets).astype(np.int64)
    freq = np.bincount(y, minlength=task.num_outputs) / len(y)
    p = freq[freq > 0]
    out.update(majority_accuracy=float(freq.max()), label_entropy=float(-(p * np.log(p)).sum()),
               uniform_accuracy=1.0 / task.num_outputs)
    if task.train_majority is not None:
      out['train_majority_accuracy'] = float(freq[task.train_majority])
  return out


CURVE_POINTS = 100   # a result's training-curve digest: at most this many window means


def curve_digest(workdir: str, steps: int) -> dict:
  """The training curve in a few numbers, kept in the result row so figures and notes
  redraw from results.jsonl alone: the mean training loss, gradient norm and accuracy
  over consecutive windows of ceil(steps / CURVE_POINTS) steps, each at its last step."""
  rows = [r for r in writer.read_jsonl(os.path.join(workdir, 'metrics.jsonl'))
          if 'loss' in r and 'grad_norm' in r]
  width = max(1, -(-int(steps) // CURVE_POINTS))
  out = {'step': [], 'loss': [], 'grad_norm': [], 'accuracy': [], 'window': width}
  for start in range(0, len(rows), width):
    w = rows[start:start + width]
    out['step'].append(int(w[-1]['step']))
    for k in ('loss', 'grad_norm', 'accuracy'):
      vals = [r[k] for r in w if r.get(k) is not None and math.isfinite(r[k])]
      out[k].append(float(f'{np.mean(vals):.6g}') if vals else None)
  if all(a is None for a in out['accuracy']):
    del out['accuracy']
  return out


# ------------------------------------------------------------------------------- loop
def _none_if_nan(x):
  return None if x is None or not math.isfinite(x) else float(x)


SEGMENTS = 'segments.json'   # <point>/segments.json: the times of each run segment


def _earlier_segments(workdir: str, resumed: bool) -> list[dict]:
  """The segments of this point's run before this one (each launch that trained it is a
  segment; a resumed run continues from the last), [] for a run from step 0."""
  path = os.path.join(workdir, SEGMENTS)
  if not resumed or not storage.exists(path):
    return []
  try:
    return [s for s in writer.read_json(path) if isinstance(s, dict)]
  except (OSError, ValueError, TypeError):   # torn by a crash: this segment's times alone
    return []


def _record_segment(workdir, earlier, t_start, progress, first_step, step) -> list[dict]:
  """Writes earlier + this segment (steps first_step..step, its wall and compile time,
  and the steady-state steps and seconds its tokens/s is measured over) to
  segments.json, at each checkpoint and at the end, so the totals survive a SIGTERM,
  Ctrl-C or kill -9. Returns the list."""
  segments = earlier + [dict(first_step=int(first_step), last_step=int(step),
                             wall_s=time.time() - t_start, compile_s=progress.compile_s or 0.0,
                             steady_steps=int(progress.steady_steps),
                             steady_s=float(progress.steady_s))]
  if writer.is_writer():
    writer.write_json(os.path.join(workdir, SEGMENTS), segments)
  return segments


def _totals(segments: list[dict], tokens_per_step: int) -> dict:
  """The whole run's wall_s and compile_s (summed over its segments) and tokens_per_s
  (the steady-state tokens of every segment over their summed steady-state time)."""
  steady_s = sum(s.get('steady_s', 0.0) for s in segments)
  steps = sum(s.get('steady_steps', 0) for s in segments)
  return {'wall_s': sum(s.get('wall_s', 0.0) for s in segments),
          'compile_s': sum(s.get('compile_s', 0.0) for s in segments),
          'tokens_per_s': steps * tokens_per_step / steady_s if steady_s > 0 else float('nan')}


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
  earlier = _earlier_segments(workdir, resumed=restored is not None)
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
    # the best checkpoint is chosen on VALID, never on the EVAL numbers reported
    loss = evaluate(compiled, params, task, config, seq_len, seed, tasks.VALID)['loss']
    return {'valid_loss': loss} if math.isfinite(loss) else None

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
          _record_segment(workdir, earlier, t_start, progress, first_step, step + 1)
        if stop.requested:
          log.close()
          ckpt.close()
          line = (f'{tag} {stop.name}: saved checkpoint at step {step + 1}; run the same '
                  f'command to resume')
          if stop.name == 'Ctrl-C':  # the one line on stderr
            print(f'interrupted: {line}', file=sys.stderr, flush=True)
          else:
            say(line, flush=True)
          sys.exit(stop.exit_status())   # 130, or 143 after SIGTERM: saved, not finished
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
    # The lr and the best checkpoint are chosen on VALID, apart from the EVAL numbers
    # that are reported.
    va = evaluate(compiled, state['params'], task, config, seq_len, seed, tasks.VALID)
    log.write(tc.steps, {'eval_loss': ev['loss'], 'eval_accuracy': ev['accuracy'],
                         'valid_loss': va['loss']})
    log.flush()
    ckpt.save(tc.steps, state,
              {'valid_loss': va['loss']} if math.isfinite(va['loss']) else None)
  ckpt.close()
  log.close()
  # the whole run's times, every segment of it (a resume starts a new one)
  totals = _totals(_record_segment(workdir, earlier, t_start, progress, first_step, tc.steps),
                   tokens_per_step)
  result = {
      'model': cfg.name, 'task': task.name, 'seq_len': seq_len, 'seed': seed,
      'hidden': cfg.hidden, 'num_params': n_params, 'steps': int(tc.steps),
      'final_loss': _none_if_nan(ev['loss']),
      'final_loss_se': _none_if_nan(ev.get('loss_se')),
      'final_accuracy': _none_if_nan(ev['accuracy']),
      'final_accuracy_se': _none_if_nan(ev.get('accuracy_se')),
      'eval_examples': ev.get('examples'),
      'valid_loss': _none_if_nan(va['loss']), 'lr': float(tc.lr),
      'valid_examples': va.get('examples'),
      'valid_split': 'valid',
      'chance_loss': chance, 'wall_s': totals['wall_s'],
      # the baselines of the exact examples scored (classification; None elsewhere)
      **{k: ev.get(k) for k in ('majority_accuracy', 'label_entropy', 'uniform_accuracy',
                                 'train_majority_accuracy')},
      'tokens_per_s': _none_if_nan(totals['tokens_per_s']),
      'compile_s': totals['compile_s'],   # every segment: <point>/segments.json
      'diverged_at_step': diverged[0] if diverged else None,
      'curve': curve_digest(workdir, tc.steps),
  }
  if not diverged:
    say(f'{tag} held-out loss {ev["loss"]:.4f} vs chance {chance:.4f}; '
        f'done in {result["wall_s"]:.1f}s')
  if writer.is_writer():
    writer.write_json(os.path.join(workdir, 'result.json'), result)
  if stop.requested:  # the signal came after the last step: this point is done, stop here
    line = f'{tag} {stop.name}: finished this point; run the same command to go on'
    ctrl_c = stop.name == 'Ctrl-C'
    print(f'interrupted: {line}' if ctrl_c else line,
          file=sys.stderr if ctrl_c else sys.stdout, flush=True)
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
