"""The gradient-flow study: how the gradient reaching position t decays with its
distance T-t from the loss, per model, at initialisation and after training, and
for the tanh RNN as the recurrent spectral radius rho varies.

Three sweeps, all written to one results.jsonl (one line per model x T x seed x phase):
  init     every model x seq_len, all seeds measured in ONE compiled, vmapped call
  trained  every model at grad_flow.train_seq_len after grad_flow.train_steps steps of
           seqlab.train on config.task (the one training loop), then measured
  rho      the rnn at grad_flow.rho_seq_len for each rho in grad_flow.rhos
"""
from __future__ import annotations

import copy
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab import diagnostics, models, sweep, tasks, train, writer


def _round(xs):
  return [float(f'{x:.6g}') for x in np.asarray(xs, np.float64).tolist()]


def _point_config(config, model: str, seq_len: int, rho: float | None = None):
  c = copy.deepcopy(config)
  with c.unlocked():
    c.model.name = model
    c.task.seq_len = seq_len
    if rho is not None:
      c.model.spectral_radius = rho
  return c


def measure_seeds(cfg: models.ModelConfig, task: tasks.Task, seeds, seq_len: int,
                  batch_size: int, params_S=None) -> dict:
  """Diagnostics for every seed in one jitted, vmapped call (one compile for all
  seeds). With params_S None each seed's model is initialised eagerly, outside jit
  (seed s -> nnx.Rngs(params=s), as models.build), and the params are stacked;
  otherwise params_S holds trained parameters stacked over seeds. Initialising inside
  the jitted vmap (orthogonal init = LAPACK QR per gate block) deadlocked XLA's CPU
  runtime intermittently on this 2-core machine (jaxlib 0.10.2), so it stays outside."""
  abstract = nnx.eval_shape(lambda: models.SequenceModel(cfg, nnx.Rngs(0)))
  graphdef, _ = nnx.split(abstract, nnx.Param)
  batch_S = {k: jnp.stack([jnp.asarray(task.batch(s, 0, batch_size, seq_len, tasks.EVAL)[k])
                           for s in seeds]) for k in task.batch(0, 0, 1, seq_len)}
  keys_S = jnp.stack([jax.random.key(int(s)) for s in seeds])
  if params_S is None:
    params_S = jax.tree.map(lambda *a: jnp.stack(a), *[
        nnx.split(models.build(cfg, int(s)), nnx.Param)[1] for s in seeds])

  def one(key, params, batch):
    model = nnx.merge(graphdef, params)
    out = {'grad': diagnostics.model_input_grad_norms(model, batch, task), 'params': params}
    layers = diagnostics.recurrent_layers(model)
    if layers:
      out['state_jacobian'] = diagnostics.state_jacobian_by_position(
          layers[0], model.embed_inputs(batch['inputs']), jax.random.fold_in(key, 1))
    return out

  out = jax.jit(jax.vmap(one))(keys_S, params_S, batch_S)
  out = jax.device_get(out)
  out['graphdef'] = graphdef
  return out


def rows_for(out, cfg, task, seeds, seq_len, phase, sweep_name, extra=None) -> list[dict]:
  rows = []
  for i, seed in enumerate(seeds):
    g = diagnostics.by_distance(out['grad'][i])
    params = jax.tree.map(lambda a: a[i], out['params'])
    spectra = diagnostics.recurrent_spectra(nnx.merge(out['graphdef'], params))
    row = {
        'point': f'{task.name}-{sweep_name}-{phase}-{cfg.name}-T{seq_len}-s{seed}'
                 + (f'-rho{cfg.spectral_radius:g}' if sweep_name == 'rho' else ''),
        'sweep': sweep_name, 'phase': phase, 'model': cfg.name, 'task': task.name,
        'seq_len': seq_len, 'seed': int(seed), 'hidden': cfg.hidden,
        'num_params': models.count_params(params),
        'spectral_radius': cfg.spectral_radius if cfg.name in ('rnn', 'lstm', 'gru') else None,
        'grad_norm_by_distance': _round(g), 'grad_norm_first': float(g[-1]),
        'grad_norm_last': float(g[0]),
        'decay_rate_per_step': diagnostics.decay_rate_per_step(g),
        **spectra, **(extra[i] if extra else {}),
    }
    if 'state_jacobian' in out:
      j = diagnostics.by_distance(out['state_jacobian'][i])
      row['state_jacobian_by_distance'] = _round(j)
      row['state_decay_rate_per_step'] = diagnostics.decay_rate_per_step(j)
    rows.append(row)
  return rows


def run(config, workdir: str) -> list[dict]:
  """Measures every point not yet in workdir/results.jsonl, then draws the figures and
  prints the table. Returns all result rows."""
  from absl import logging as absl_logging
  absl_logging.set_verbosity(absl_logging.WARNING)  # orbax logs each checkpoint save at INFO
  # The trained phase runs seqlab.train once per seed, each building its own jitted
  # step with the same HLO: the persistent cache compiles it once per model, not per
  # seed (and a re-run compiles nothing).
  jax.config.update('jax_compilation_cache_dir', os.path.join(workdir, 'jax_cache'))
  jax.config.update('jax_persistent_cache_min_compile_time_secs', 0.5)
  sweep.validate(config)
  t0 = time.time()
  gf, sw = config.grad_flow, config.sweep
  if len(sw.tasks) != 1:
    raise sweep.ConfigError(f'tasks={",".join(sw.tasks)}: the grad_flow study measures one '
                            f'task per workdir; pass one --tasks value (e.g. recall for the '
                            f'loss at h_T, kback for the per-step loss)')
  config = copy.deepcopy(config)
  with config.unlocked():
    config.task.name = sw.tasks[0]  # --tasks picks the loss: read at h_T or at every step
  task = tasks.build(config.task)
  seeds = [int(s) for s in sw.seeds]
  results = os.path.join(workdir, 'results.jsonl')
  done = sweep.finished(workdir)
  rows = list(done.values())

  def record(new_rows):
    for r in new_rows:
      if writer.is_writer():
        writer.append_jsonl_atomic(results, r)
      rows.append(r)

  def todo(names):
    return [n for n in names if n not in done]

  # 1) at initialisation, every model x T, seeds vmapped
  for model in sw.models:
    for seq_len in sw.seq_lens:
      names = [f'{task.name}-models-init-{model}-T{seq_len}-s{s}' for s in seeds]
      if not todo(names):
        continue
      c = _point_config(config, model, int(seq_len))
      cfg = train.model_config(c, task, int(seq_len))
      out = measure_seeds(cfg, task, seeds, int(seq_len), gf.batch_size)
      record(rows_for(out, cfg, task, seeds, int(seq_len), 'init', 'models'))
      _progress(rows[-1], t0)

  # 2) after training, every model at train_seq_len (the one training loop)
  if gf.train_steps > 0:
    t_len = int(gf.train_seq_len)
    for model in sw.models:
      names = [f'{task.name}-models-trained-{model}-T{t_len}-s{s}' for s in seeds]
      if not todo(names):
        continue
      params, extra = [], []
      for s in seeds:
        c = _point_config(config, model, t_len)
        with c.unlocked():
          c.seed = s
          c.train.steps = gf.train_steps
        result, graphdef, p = train.train(
            c, os.path.join(workdir, 'train', f'{model}-T{t_len}-s{s}-{task.name}'),
            return_params=True,
            verbose=False)
        params.append(p)
        extra.append({'train_steps': gf.train_steps, 'train_final_loss': result['final_loss'],
                      'chance_loss': result['chance_loss']})
      cfg = train.model_config(c, task, t_len)
      params_S = jax.tree.map(lambda *a: jnp.stack(a), *params)
      out = measure_seeds(cfg, task, seeds, t_len, gf.batch_size, params_S=params_S)
      record(rows_for(out, cfg, task, seeds, t_len, 'trained', 'models', extra))
      _progress(rows[-1], t0)

  # 3) the rnn's spectral radius
  for rho in gf.rhos:
    r_len = int(gf.rho_seq_len)
    names = [f'{task.name}-rho-init-rnn-T{r_len}-s{s}-rho{rho:g}' for s in seeds]
    if not todo(names):
      continue
    c = _point_config(config, 'rnn', r_len, rho=float(rho))
    with c.unlocked():
      c.model.recurrent_init = 'orthogonal'
    cfg = train.model_config(c, task, r_len)
    out = measure_seeds(cfg, task, seeds, r_len, gf.batch_size)
    record(rows_for(out, cfg, task, seeds, r_len, 'init', 'rho'))
    _progress(rows[-1], t0)

  from seqlab import plots_grad_flow
  drawn = plots_grad_flow.draw(workdir)
  print(plots_grad_flow.table(writer.read_jsonl(results)))
  print(f'\nresults: {results}')
  print('figures:\n  ' + '\n  '.join(p for p in drawn['figures'] if p.endswith('.png')))
  print(f'(PDF beside each PNG; {time.time() - t0:.0f} s)')
  return rows


def _progress(row, t0):
  print(f'[{time.time() - t0:6.1f}s] {row["sweep"]}/{row["phase"]} {row["model"]} '
        f'T={row["seq_len"]}: decay rate {row["decay_rate_per_step"]:+.4f}/step, '
        f'||dL/dx_1|| = {row["grad_norm_first"]:.3g}', flush=True)
