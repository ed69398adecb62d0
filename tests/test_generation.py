"""The generation study (decode cost against context) and sampling: end to end at tiny
sizes, resume, the crossover (its claim's branches: test_claims.py), and sampling that is
deterministic for a seed and greedy at temperature 0."""
import os

import jax
import jax.numpy as jnp
import numpy as np

from experiments import generation as generation_config
from seqlab import models, sampling
from seqlab.infra import writer
from seqlab.studies import generation


def tiny_config():
  c = generation_config.get_config('quick')
  with c.unlocked():
    c.generation.hidden, c.generation.layers, c.generation.steps = 8, 1, 2
    c.sweep.models = ['lstm', 'transformer', 'transformer_rerun']
    c.sweep.seq_lens, c.sweep.batches = [8, 16], (1,)
  return c


def test_study_end_to_end_and_resume(tmp_path):
  rows = generation.run(tiny_config(), str(tmp_path))
  assert len(rows) == 6 and all(r['status'] == 'ok' for r in rows)
  by = {(r['model'], r['seq_len']): r for r in rows}
  # the state of an LSTM (2 x H floats) does not grow; the KV cache (2 x L' x H) does
  assert by[('lstm', 8)]['state_bytes_per_sequence'] == by[('lstm', 16)]['state_bytes_per_sequence'] == 2 * 8 * 4
  assert by[('transformer', 16)]['state_bytes_per_sequence'] > by[('transformer', 8)]['state_bytes_per_sequence']
  assert by[('transformer_rerun', 8)]['state_bytes_per_sequence'] == 0
  assert 'prefill_ms' in by[('lstm', 8)] and 'prefill_ms' not in by[('transformer_rerun', 8)]
  assert (tmp_path / 'figures' / 'generation_a.png').exists()
  assert len(generation.run(tiny_config(), str(tmp_path))) == 6   # nothing re-measured
  assert len(writer.read_jsonl(str(tmp_path / 'results.jsonl'))) == 6


def _rows(slope_rnn, slope_att, cache_grows=True, state_grows=False):
  out = []
  for l in (256, 1024, 4096, 16384):
    for m, slope, grows in (('lstm', slope_rnn, state_grows),
                            ('transformer', slope_att, cache_grows)):
      ms = (l / 256) ** slope
      out.append(dict(model=m, batch=1, seq_len=l, status='ok', decode_ms_per_token=ms,
                      tokens_per_s=1e3 / ms, state_bytes_per_sequence=l if grows else 64))
  return out


def test_crossover_is_where_the_transformer_becomes_slower():
  rows = _rows(0.0, 1.0)
  for r in rows:
    if r['model'] == 'lstm':
      r['decode_ms_per_token'], r['tokens_per_s'] = 4.0, 250.0   # = transformer at L=1024
  assert generation.crossover(rows) == 1024


def _model():
  cfg = models.ModelConfig(name='gru', hidden=8, vocab_size=7, num_outputs=7)
  return models.build(cfg, 0)


def test_sampling_is_deterministic_for_a_seed():
  model, prompt = _model(), jnp.array([[1, 2, 3]])
  a = sampling.generate(model, prompt, 12, temperature=1.0, seed=3)
  b = sampling.generate(model, prompt, 12, temperature=1.0, seed=3)
  c = sampling.generate(model, prompt, 12, temperature=1.0, seed=4)
  np.testing.assert_array_equal(a, b)
  assert a.shape == (1, 12) and not np.array_equal(a, c)


def test_temperature_zero_is_greedy_against_the_parallel_forward():
  model, prompt = _model(), jnp.array([[1, 2, 3]])
  out = sampling.generate(model, prompt, 6, temperature=0.0)[0]
  seq = [1, 2, 3]
  for t in out:    # each generated token is the argmax of the full forward over the prefix
    assert int(t) == int(jnp.argmax(model(jnp.array([seq]))[0, -1]))
    seq.append(int(t))


def test_temperature_scales_the_logits():
  logits = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
  keys = jax.random.split(jax.random.key(0), 4000)
  draws = np.array([int(sampling.next_token(logits, k, 1.0)[0]) for k in keys[:2000]])
  np.testing.assert_allclose(np.bincount(draws, minlength=3) / 2000, [0.7, 0.2, 0.1], atol=0.03)
  cold = np.array([int(sampling.next_token(logits, k, 0.25)[0]) for k in keys[2000:]])
  assert (cold == 0).mean() > 0.95   # p^4 renormalised: 0.7^4 / (0.7^4+0.2^4+0.1^4) = 0.996


def test_sample_text_from_a_finished_charlm_point(tmp_path):
  from experiments import text as text_config
  from seqlab import train
  from seqlab.evaluate import LoadError
  c = text_config.get_config()
  with c.unlocked():
    c.num_devices, c.model.name, c.model.hidden = 1, 'gru', 8
    c.task.seq_len, c.train.steps, c.train.batch_size, c.train.eval_examples = 86, 3, 2, 1
  train.train(c, str(tmp_path / 'p'), verbose=False)
  a = sampling.sample_text(str(tmp_path / 'p'), 'def ', steps=20, temperature=1.0, seed=1)
  b = sampling.sample_text(str(tmp_path / 'p'), 'def ', steps=20, temperature=1.0, seed=1)
  assert a == b and isinstance(a, str) and 0 < len(a) <= 20   # 20 bytes: at most 20 characters
  # the launcher's --sample prints the prompt and its continuation, the same for a seed
  import subprocess
  import sys
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  cmd = [sys.executable, 'launch.py', f'--sample={tmp_path / "p"}', '--prompt=def ',
         '--sample_len=20', '--temperature=1.0', '--sample_seed=1']
  env = dict(os.environ, XLA_FLAGS='', JAX_PLATFORMS='cpu')
  r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=120)
  assert r.returncode == 0 and r.stdout.rstrip('\n').endswith(a) and r.stdout.startswith('def ')
  with c.unlocked():
    c.task.name, c.task.seq_len = 'recall', 8
  train.train(c, str(tmp_path / 'r'), verbose=False)
  import pytest
  with pytest.raises(LoadError, match="task 'recall'; sampling needs a charlm point"):
    sampling.sample_text(str(tmp_path / 'r'), 'x')
  r = subprocess.run(cmd[:2] + [f'--sample={tmp_path / "r"}'], cwd=root, env=env,
                     capture_output=True, text=True, timeout=120)
  assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'charlm' in r.stderr


def test_byte_tokens_round_trip():
  from seqlab.data import text
  tok = text.make_tokenizer('byte', [])
  assert tok.decode(tok.encode('héllo\n')) == 'héllo\n'
  tok = text.make_tokenizer('char', ['abc'])
  assert tok.decode(tok.encode('cab?')) == 'cab'   # the unknown '?' is dropped
