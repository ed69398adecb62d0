import jax.numpy as jnp
import pytest

from seqlab import models

NAMES = ['rnn', 'lstm', 'gru', 'transformer']


@pytest.mark.parametrize('name', NAMES)
@pytest.mark.parametrize('readout', ['per_step', 'last'])
def test_shapes(name, readout):
  cfg = models.ModelConfig(name=name, hidden=8, vocab_size=6, num_outputs=3, readout=readout,
                           max_len=12)
  y = models.build(cfg, 0)(jnp.zeros((2, 11), jnp.int32))
  assert y.shape == ((2, 11, 3) if readout == 'per_step' else (2, 3))


@pytest.mark.parametrize('name', NAMES)
def test_param_budget_is_met_within_10_percent(name):
  base = models.ModelConfig(name=name, vocab_size=10, num_outputs=10, layers=2)
  sized = models.size_to_budget(base, 40_000)
  assert abs(models.num_params(sized) - 40_000) / 40_000 < 0.10


def test_num_params_matches_allocated():
  from flax import nnx
  cfg = models.ModelConfig(name='lstm', hidden=12, vocab_size=7, num_outputs=7)
  m = models.build(cfg, 0)
  assert models.num_params(cfg) == models.count_params(nnx.state(m, nnx.Param))
  # LSTM: embed 7*12, w_ih 12*48, b 48, w_hh 12*48, head 12*7+7
  assert models.num_params(cfg) == 7 * 12 + 12 * 48 + 48 + 12 * 48 + 12 * 7 + 7


def test_unknown_model_message():
  with pytest.raises(ValueError, match="unknown model 'foo'; allowed: rnn, lstm"):
    models.build(models.ModelConfig(name='foo'), 0)
