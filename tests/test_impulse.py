"""Impulse responses: exactly |lambda|^t per channel for the linear recurrences,
finite and causal for every model, and the study's results file and figure."""
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import impulse as impulse_config
from seqlab import models
from seqlab.infra import writer
from seqlab.measure import diagnostics
from seqlab.studies import impulse


def _ratio(layer, seq_len=60):
  e = diagnostics.impulse_inputs(jax.random.key(0), 3, seq_len, layer.norm.num_features)
  r_KxTxN = np.asarray(diagnostics.state_impulse_response(layer, e), np.float64)
  keep = r_KxTxN[:, :1] > 1e-4          # channels the impulse reached
  return r_KxTxN / np.where(keep, r_KxTxN[:, :1], 1.0), keep


def test_lru_state_response_is_abs_lambda_to_the_t():
  m = models.build(models.ModelConfig(name='lru', hidden=16, r_min=0.5, r_max=0.95), 0)
  layer = m.backbone.layers[0]
  ratio, keep = _ratio(layer)
  expected_TxN = np.abs(np.asarray(layer.eigenvalues(), np.complex128)) ** np.arange(60)[:, None]
  expected = np.broadcast_to(expected_TxN, ratio.shape)
  mask = np.broadcast_to(keep, ratio.shape)
  np.testing.assert_allclose(ratio[mask], expected[mask], rtol=1e-4, atol=1e-6)


def test_mingru_state_response_is_one_minus_gate_to_the_t():
  """With zero input after t=0 the gate is z = sigmoid(b_z) (LayerNorm(0) = 0), so
  h_t - h^0_t = (1 - z)^t (h_0 - h^0_0): lambda = 1 - sigmoid(b_z)."""
  m = models.build(models.ModelConfig(name='mingru', hidden=16), 0)
  layer = m.backbone.layers[0]
  layer.gate.bias[...] = jnp.linspace(-3.0, 1.0, 16)   # spread the decay rates
  ratio, keep = _ratio(layer)
  lam_N = 1.0 - 1.0 / (1.0 + np.exp(-np.linspace(-3.0, 1.0, 16)))
  expected = np.broadcast_to(lam_N ** np.arange(60)[:, None], ratio.shape)
  mask = np.broadcast_to(keep, ratio.shape)
  np.testing.assert_allclose(ratio[mask], expected[mask], rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize('name', ['rnn', 'lstm', 'gru', 'lru', 'mingru', 'transformer'])
def test_every_model_responds_to_the_impulse_and_nothing_before_it(name):
  m = models.build(models.ModelConfig(name=name, hidden=8, max_len=32), 0)
  r = np.asarray(diagnostics.impulse_response(m, 24, jax.random.key(1), directions=2))
  assert r.shape == (24,) and np.all(np.isfinite(r)) and r[0] > 1e-3
  # An impulse at t=5 leaves h_0..h_4 exactly as for zero input (causality).
  e = jnp.roll(diagnostics.impulse_inputs(jax.random.key(2), 1, 24, 8), 5, axis=1)
  diff = jnp.abs(m.backbone(e, causal=True) - m.backbone(jnp.zeros_like(e), causal=True))
  assert float(diff[:, :5].max()) < 1e-6 and float(diff[:, 5].max()) > 1e-3


def test_study_writes_results_and_figures_and_skips_finished(tmp_path, capsys):
  c = impulse_config.get_config()
  (tmp_path / 'grad_flow').mkdir()   # the grad_flow study beside the workdir: panel (b)
  (tmp_path / 'grad_flow' / 'results.jsonl').write_text(json.dumps({'point': 'recall-models-init-rnn-T16-s0', 'phase': 'init',
                              'sweep': 'models', 'model': 'rnn', 'seq_len': 16, 'seed': 0,
                              'grad_norm_by_distance': [1.0, 0.5, 0.25]}) + '\n')
  with c.unlocked():
    c.sweep.models, c.sweep.seq_lens, c.sweep.seeds = ['rnn', 'lru'], [16], [0]
    c.model.hidden = 8
  workdir = str(tmp_path / 'impulse')
  rows = impulse.run(c, workdir)
  assert {r['model'] for r in rows} == {'rnn', 'lru'}
  assert all(len(r['impulse_response']) == 16 and r['impulse_response'][0] == 1.0 for r in rows)
  assert os.path.exists(tmp_path / 'impulse' / 'figures' / 'impulse.png')
  assert 'grad_flow, init' in capsys.readouterr().out or impulse.grad_flow_rows(workdir)
  impulse.run(c, workdir)
  assert len(writer.read_jsonl(str(tmp_path / 'impulse' / 'results.jsonl'))) == 2
