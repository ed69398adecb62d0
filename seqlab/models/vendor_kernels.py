"""Kernels JAX already ships for accelerators, behind seqlab's kernel switch:

  lstm        'cudnn'   cuDNN's LSTM through jax.experimental.rnn.lstm (GPU)
  transformer 'cudnn'   jax.nn.dot_product_attention(implementation='cudnn') (GPU,
                        bfloat16 / float16)
  transformer 'pallas'  Pallas flash attention for TPU (jax.experimental.pallas.ops.tpu)

Where a backend cannot serve (another platform, float32 for cuDNN attention) the layer
runs a reference instead and says so once in a `note:` line: seqlab's scan for the LSTM,
XLA's dot_product_attention for attention. The tests check the cuDNN weight packing
through jax.experimental.rnn.lstm_ref (cuDNN's layout and maths in pure JAX) against
seqlab's scan, and the Pallas kernel in interpret mode on a CPU, on outputs and
gradients.

Shape letters: B batch, T time, D input width, H hidden, G = 4H gates, N heads, K head size.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import PartitionSpec as P

Array = jax.Array
_NOTED: set = set()


def note_once(key: str, text: str) -> None:
  """One `note:` line per process for each fallback (traced code runs this at trace time)."""
  if key not in _NOTED:
    _NOTED.add(key)
    print(f'note: {text}', flush=True)


def platform() -> str:
  return jax.default_backend()


# ------------------------------------------------------------------------------- LSTM
def pack_lstm(w_ih_DxG: Array, w_hh_HxG: Array, b_G: Array) -> Array:
  """seqlab's LSTM weights as cuDNN's flat vector (torch.nn.LSTM's layout: W_ih [G, D],
  W_hh [G, H], b_ih [G], b_hh [G], gates i, f, g, o in both). seqlab has one bias; it
  goes to b_ih and b_hh is zero."""
  return jnp.concatenate([w_ih_DxG.T.reshape(-1), w_hh_HxG.T.reshape(-1), b_G.reshape(-1),
                          jnp.zeros_like(b_G).reshape(-1)])


def cudnn_lstm_serves() -> bool:
  if platform() == 'gpu':
    return True
  note_once('cudnn-lstm', f'model.kernel=cudnn for the LSTM needs a GPU; on {platform()} it '
                          f'runs the reference scan')
  return False


def cudnn_lstm(w_ih_DxG: Array, b_G: Array, w_hh_HxG: Array, x_BxTxD: Array, state0,
               reference: bool = False):
  """One LSTM layer through cuDNN: (h [B, T, H], (h_T, c_T)). reference=True runs
  jax.experimental.rnn.lstm_ref instead, cuDNN's layout and maths in pure JAX (tests)."""
  from jax.experimental import rnn
  h0_BxH, c0_BxH = state0
  b, t, d = x_BxTxD.shape
  h = w_hh_HxG.shape[0]
  seq_lengths = jnp.full((b,), t, jnp.int32)
  if reference:
    y, h_n, c_n = rnn.lstm_ref(x_BxTxD, h0_BxH[None], c0_BxH[None], {0: w_ih_DxG.T},
                               {0: w_hh_HxG.T}, {0: b_G}, {0: jnp.zeros_like(b_G)},
                               seq_lengths, d, h, 1, 0.0, False)
  else:
    y, h_n, c_n = rnn.lstm(x_BxTxD, h0_BxH[None], c0_BxH[None],
                           pack_lstm(w_ih_DxG, w_hh_HxG, b_G), seq_lengths, d, h, 1, 0.0, False)
  return y, (h_n[0], c_n[0])


# -------------------------------------------------------------------------- attention
def cudnn_attention_serves(dtype, on: str | None = None) -> bool:
  """cuDNN's fused attention runs on a GPU in bfloat16 or float16 only."""
  return (on or platform()) == 'gpu' and jnp.dtype(dtype) in (jnp.bfloat16, jnp.float16)


def cudnn_attention(q_BxTxNxK: Array, k_BxSxNxK: Array, v_BxSxNxK: Array, causal: bool) -> Array:
  if cudnn_attention_serves(q_BxTxNxK.dtype):
    return jax.nn.dot_product_attention(q_BxTxNxK, k_BxSxNxK, v_BxSxNxK, is_causal=causal,
                                        implementation='cudnn')
  note_once(f'cudnn-attention-{q_BxTxNxK.dtype}',
            f'model.kernel=cudnn attention needs a GPU and bfloat16/float16; with '
            f'{q_BxTxNxK.dtype} on {platform()} it runs XLA\'s dot_product_attention')
  return jax.nn.dot_product_attention(q_BxTxNxK, k_BxSxNxK, v_BxSxNxK, is_causal=causal,
                                      implementation='xla')


def pallas_flash_attention(q_BxTxNxK: Array, k_BxSxNxK: Array, v_BxSxNxK: Array,
                           causal: bool) -> Array:
  """Pallas' TPU flash attention on [B, T, N, K] (it takes [B, N, T, K]); its blocks need
  T a multiple of 128."""
  from jax.experimental.pallas.ops.tpu import flash_attention as fa
  to_bntk = lambda x: x.transpose(0, 2, 1, 3)

  def flash(q, k, v):
    return fa.flash_attention(to_bntk(q), to_bntk(k), to_bntk(v), causal=causal,
                              sm_scale=1.0 / np.sqrt(q.shape[-1])).transpose(0, 2, 1, 3)

  # XLA cannot partition a Mosaic kernel: under a data-parallel mesh (the steps are
  # traced under train.compile_steps' mesh) each device runs it on its own rows.
  mesh = jax.sharding.get_abstract_mesh()
  if not mesh.empty and 'data' in mesh.axis_names and mesh.shape['data'] > 1:
    rows = P('data')
    flash = jax.shard_map(flash, mesh=mesh, in_specs=(rows, rows, rows), out_specs=rows,
                          check_vma=False)
  return flash(q_BxTxNxK, k_BxSxNxK, v_BxSxNxK)


def pallas_attention(q_BxTxNxK: Array, k_BxSxNxK: Array, v_BxSxNxK: Array, causal: bool) -> Array:
  t, s = q_BxTxNxK.shape[1], k_BxSxNxK.shape[1]
  if platform() == 'tpu' and t % 128 == 0 and s % 128 == 0:
    return pallas_flash_attention(q_BxTxNxK, k_BxSxNxK, v_BxSxNxK, causal)
  why = (f'needs a TPU; on {platform()}' if platform() != 'tpu' else
         f'needs lengths that are multiples of 128; at {t} x {s}')
  note_once(f'pallas-attention-{why}', f'model.kernel=pallas attention {why} it runs XLA\'s '
                                       f'dot_product_attention')
  return jax.nn.dot_product_attention(q_BxTxNxK, k_BxSxNxK, v_BxSxNxK, is_causal=causal,
                                      implementation='xla')
