"""The gradient-flow study end to end at toy size: results, figures, resume, vmap."""
import os

import numpy as np
import pytest

from experiments import grad_flow as grad_flow_config
from seqlab import sweep, train
from seqlab.data import tasks
from seqlab.infra import writer
from seqlab.measure import diagnostics
from seqlab.studies import grad_flow


def tiny_config():
  c = grad_flow_config.get_config()
  with c.unlocked():
    c.num_devices = 1
    c.model.hidden = 8
    c.train.batch_size = 4
    c.train.log_every = 1
    c.train.eval_examples = 8
    c.sweep.models = ['rnn', 'transformer']
    c.sweep.seq_lens = [16, 32]
    c.sweep.seeds = [0, 1]
    c.grad_flow.batch_size = 2
    c.grad_flow.train_steps = 3
    c.grad_flow.train_seq_len = 16
    c.grad_flow.rhos = [0.5, 1.0]
    c.grad_flow.rho_seq_len = 32
  return c


def test_default_sweep_lists_registered_models_only():
  from seqlab import models
  assert set(grad_flow_config.get_config().sweep.models) <= set(models.MODELS)
  assert {'rnn', 'lstm', 'gru', 'transformer'} <= set(grad_flow_config.get_config().sweep.models)


def test_seeds_in_one_vmapped_call_match_one_seed_alone():
  c = tiny_config()
  task = tasks.build(c.task)
  cfg = train.model_config(c, task, 16)
  both = diagnostics.measure_seeds(cfg, task, [0, 1], 16, 2)
  alone = diagnostics.measure_seeds(cfg, task, [1], 16, 2)
  np.testing.assert_allclose(both['grad'][1], alone['grad'][0], rtol=1e-5)
  np.testing.assert_allclose(both['state_jacobian'][1], alone['state_jacobian'][0], rtol=1e-5)
  assert not np.allclose(both['grad'][0], both['grad'][1])  # seeds differ


def test_study_writes_results_and_figures_and_resumes(tmp_path, capsys):
  c, workdir = tiny_config(), str(tmp_path)
  grad_flow.run(c, workdir)
  rows = writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))
  # init: 2 models x 2 T x 2 seeds; trained: 2 models x 2 seeds; rho: 2 rhos x 2 seeds
  assert len(rows) == 8 + 4 + 4
  assert {r['phase'] for r in rows} == {'init', 'trained'}
  for r in rows:
    assert len(r['grad_norm_by_distance']) == r['seq_len']
    assert r['grad_norm_first'] == pytest.approx(r['grad_norm_by_distance'][-1], rel=1e-5)
    assert np.isfinite(r['decay_rate_per_step'])
    for k in ('model', 'seq_len', 'seed', 'phase', 'spectral_radius'):
      assert k in r
  # the rho sweep of the tanh RNN decays at least as fast as linear theory log(rho)
  for r in (r for r in rows if r['sweep'] == 'rho'):
    assert r['decay_rate_per_step'] <= np.log(r['spectral_radius']) + 1e-3
  for name in 'abcd':
    for ext in ('png', 'pdf'):
      assert os.path.getsize(os.path.join(workdir, 'figures', f'grad_flow_{name}.{ext}')) > 0
  out = capsys.readouterr().out
  assert 'decay/step' in out and 'grad_flow_a.png' in out
  # the same command again measures nothing new
  grad_flow.run(c, workdir)
  assert len(writer.read_jsonl(os.path.join(workdir, 'results.jsonl'))) == len(rows)


def test_unknown_variant_is_a_one_line_error():
  with pytest.raises(ValueError, match='allowed: quick, full'):
    grad_flow_config.get_config('bogus')


def test_two_tasks_in_one_workdir_is_a_config_error(tmp_path):
  c = tiny_config()
  with c.unlocked():
    c.sweep.tasks = ['recall', 'kback']
    c.sweep.seq_lens = [32]  # long enough for kback's 16-step lag
  with pytest.raises(sweep.ConfigError, match='one task per workdir'):
    grad_flow.run(c, str(tmp_path))
  assert not os.path.exists(tmp_path / 'results.jsonl')
