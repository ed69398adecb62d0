"""seqlab.train.make_optimizer against a numpy AdamW (Loshchilov & Hutter 2019) with
global-norm clipping and a linear warm-up then cosine decay, written from the formulas."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from seqlab import train


def lr_at(step, lr, warmup, steps, final_fraction):
  """Linear from 0 to lr over `warmup` steps, then a half cosine to final_fraction * lr
  at `steps` (the schedule's total length includes the warm-up)."""
  if step < warmup:
    return lr * step / warmup
  end = lr * final_fraction
  frac = min((step - warmup) / (steps - warmup), 1.0)
  return end + (lr - end) * 0.5 * (1 + math.cos(math.pi * frac))


def numpy_adamw(grads, p0, lr, warmup, steps, final_fraction, clip, wd,
                b1=0.9, b2=0.999, eps=1e-8):
  p, m, v, out = p0.astype(np.float64), 0.0, 0.0, []
  for t, g in enumerate(grads):
    g = g.astype(np.float64)
    if clip:
      norm = np.sqrt((g ** 2).sum())
      g = g * min(1.0, clip / norm)
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g ** 2
    m_hat, v_hat = m / (1 - b1 ** (t + 1)), v / (1 - b2 ** (t + 1))
    p = p - lr_at(t, lr, warmup, steps, final_fraction) * (
        m_hat / (np.sqrt(v_hat) + eps) + wd * p)
    out.append(p.copy())
  return out


def run_optax(tc, grads, p0):
  tx = train.make_optimizer(tc)
  p, state, out = jnp.asarray(p0), None, []
  state = tx.init(p)
  for g in grads:
    upd, state = tx.update(jnp.asarray(g), state, p)
    p = p + upd
    out.append(np.asarray(p, np.float64))
  return out


@pytest.mark.parametrize('clip, wd, final', [(0.0, 0.0, 0.0), (0.5, 0.0, 0.0), (0.5, 0.1, 0.2)])
def test_adamw_with_warmup_cosine_and_clipping_matches_numpy(clip, wd, final):
  steps, warmup, lr = 12, 4, 0.1
  rng = np.random.default_rng(0)
  # gradient norms from 0.01 to 100: clipping acts on some steps and not on others
  grads = [rng.normal(size=5).astype(np.float32) * 10.0 ** rng.uniform(-2, 2)
           for _ in range(steps)]
  p0 = rng.normal(size=5).astype(np.float32)
  tc = ml_collections.ConfigDict(dict(lr=lr, warmup_steps=warmup, steps=steps, clip_norm=clip,
                                      weight_decay=wd, final_lr_fraction=final))
  got = run_optax(tc, grads, p0)
  want = numpy_adamw(grads, p0, lr, warmup, steps, final, clip, wd)
  for t, (a, b) in enumerate(zip(got, want)):
    np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-6, err_msg=f'step {t}')
  if clip:   # and the clipping mattered: without it the trajectory differs
    no_clip = numpy_adamw(grads, p0, lr, warmup, steps, final, 0.0, wd)
    assert np.abs(no_clip[-1] - want[-1]).max() > 1e-3


def test_first_update_is_zero_and_warmup_is_capped_by_the_run_length():
  """Warm-up starts at lr = 0; a run shorter than its warm-up still reaches lr."""
  tc = ml_collections.ConfigDict(dict(lr=0.1, warmup_steps=100, steps=3, clip_norm=0.0,
                                      weight_decay=0.0))
  got = run_optax(tc, [np.ones(2, np.float32)] * 3, np.zeros(2, np.float32))
  np.testing.assert_array_equal(got[0], 0.0)
  # warm-up capped at steps - 1 = 2: lr 0, 0.05, then 0.1 at the end of the warm-up
  np.testing.assert_allclose(got[2], -(0.05 + 0.1), rtol=1e-5)


def test_skip_nonfinite_drops_a_nan_update_and_keeps_the_parameters():
  tc = ml_collections.ConfigDict(dict(lr=0.1, warmup_steps=0, steps=4, clip_norm=0.0,
                                      weight_decay=0.0, skip_nonfinite=2))
  tx = train.make_optimizer(tc)
  p = jnp.ones(3)
  state = tx.init(p)
  upd, state = tx.update(jnp.full(3, jnp.nan), state, p)
  assert np.array_equal(np.asarray(p + upd), np.ones(3))
  assert jax.tree.leaves(state)   # the wrapper's state (error counts) exists
