"""Memory-efficient blocked attention: online softmax over key blocks, with a
hand-written backward pass (FlashAttention-2's, Dao 2023) and causal blocks skipped.

Shape letters as in attention.py: B batch, T query positions, S key positions,
N heads, K head size; Q a block length (query and key blocks are the same length),
M = B N the heads folded into one batch, nq / nk the numbers of query / key blocks.

The reference is attention.attend (the paper's einsum, O(T S) memory). Here the
queries are cut into blocks and, for each, the softmax over key blocks is accumulated
with a running maximum m and normaliser l (the online softmax of Milakov &
Gimelshein 2018; Rabe & Staats 2021; FlashAttention, Dao et al. 2022), so no [T, S]
matrix is ever held. Under a causal mask the inner loop stops at the diagonal block
(a while loop with a data-dependent trip count), so about half the blocks are never
touched. The forward keeps only the output and the log-sum-exp per query; the
`jax.custom_vjp` backward recomputes each block's probabilities from them:
  dV_j = sum_i P_ij^T dO_i,  dS_ij = P_ij * (dO_i V_j^T - rowsum(dO_i * O_i)),
  dQ_i = sum_j dS_ij K_j,    dK_j = sum_i dS_ij^T Q_i,
in one pass over key blocks (dQ carried whole and updated block by block), so memory
grows as T, not T^2, and autodiff never stores per-block intermediates.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

BLOCK = 128   # block length; T need not be a multiple of it
_NEG = -1e30  # masked logit: exp(_NEG - m) == 0 for any finite row maximum m


def _mask_QxC(qi, kj, blk: int, s_len: int, causal: bool) -> Array:
  q_pos = qi * blk + jnp.arange(blk)[:, None]
  k_pos = kj * blk + jnp.arange(blk)[None, :]
  mask = k_pos < s_len                         # padded keys
  return mask & (k_pos <= q_pos) if causal else mask


def _key_range(qi, nk: int, causal: bool):
  """Key blocks query block qi attends to: [0, upper)."""
  return jnp.minimum(qi + 1, nk) if causal else nk


def _forward(q_blocks, k_blocks, v_blocks, s_len, causal):
  """Returns the output [nq, M, Q, K] and the log-sum-exp [nq, M, Q]."""
  nq, m_heads, blk, kd = q_blocks.shape
  nk = k_blocks.shape[0]
  dtype = q_blocks.dtype

  def one_query_block(qi):
    q_MxQxK = q_blocks[qi]

    def key_block(kj, carry):
      m_MxQ, l_MxQ, acc_MxQxK = carry
      s_MxQxC = jnp.einsum('mqk,mck->mqc', q_MxQxK, k_blocks[kj])
      s_MxQxC = jnp.where(_mask_QxC(qi, kj, blk, s_len, causal), s_MxQxC, _NEG)
      m_new = jnp.maximum(m_MxQ, s_MxQxC.max(-1))
      p_MxQxC = jnp.exp(s_MxQxC - m_new[..., None])
      corr = jnp.exp(m_MxQ - m_new)
      acc = acc_MxQxK * corr[..., None] + jnp.einsum('mqc,mck->mqk', p_MxQxC, v_blocks[kj])
      return m_new, l_MxQ * corr + p_MxQxC.sum(-1), acc

    # Every query row sees key 0 in its first block, so l > 0 after the loop.
    init = (jnp.full((m_heads, blk), _NEG, dtype), jnp.zeros((m_heads, blk), dtype),
            jnp.zeros((m_heads, blk, kd), dtype))
    m_MxQ, l_MxQ, acc = lax.fori_loop(0, _key_range(qi, nk, causal), key_block, init)
    return acc / l_MxQ[..., None], m_MxQ + jnp.log(l_MxQ)

  return lax.map(one_query_block, jnp.arange(nq))


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4))
def _flash(q_blocks, k_blocks, v_blocks, s_len, causal):
  return _forward(q_blocks, k_blocks, v_blocks, s_len, causal)[0]


def _flash_fwd(q_blocks, k_blocks, v_blocks, s_len, causal):
  o_blocks, lse = _forward(q_blocks, k_blocks, v_blocks, s_len, causal)
  return o_blocks, (q_blocks, k_blocks, v_blocks, o_blocks, lse)


def _flash_bwd(s_len, causal, res, do_blocks):
  """One pass over key blocks j; for each, the query blocks i that see it. Everything
  is formed transposed, [C, Q] per block pair, so that dV_j += P^T dO_i and
  dK_j += dS^T Q_i are plain (row-major) products; only dQ_i += dS K_j contracts the
  first axis. dQ is carried whole and updated in place, block i at a time. 4 of the 5
  products per pair thus go to XLA:CPU's fast small-matrix path, and the scores and
  dO V^T are formed once per pair (two passes formed them twice)."""
  q_blocks, k_blocks, v_blocks, o_blocks, lse = res
  nq, nk, blk = q_blocks.shape[0], k_blocks.shape[0], q_blocks.shape[2]
  delta = jnp.sum(do_blocks * o_blocks, -1)              # rowsum(dO * O): [nq, M, Q]

  def key_block(dq_all, kj):
    k_MxCxK, v_MxCxK = k_blocks[kj], v_blocks[kj]

    def query_block(qi, carry):
      dk, dv, dq_all = carry
      q_MxQxK, do_MxQxK = q_blocks[qi], do_blocks[qi]
      s_MxCxQ = jnp.einsum('mck,mqk->mcq', k_MxCxK, q_MxQxK)
      p = jnp.where(_mask_QxC(qi, kj, blk, s_len, causal).T,
                    jnp.exp(s_MxCxQ - lse[qi][:, None, :]), 0.0)
      dp_MxCxQ = jnp.einsum('mck,mqk->mcq', v_MxCxK, do_MxQxK)
      ds = p * (dp_MxCxQ - delta[qi][:, None, :])
      dq_all = dq_all.at[qi].add(jnp.einsum('mcq,mck->mqk', ds, k_MxCxK))
      return (dk + jnp.einsum('mcq,mqk->mck', ds, q_MxQxK),
              dv + jnp.einsum('mcq,mqk->mck', p, do_MxQxK), dq_all)

    first = kj if causal else 0        # causal: query blocks before kj never see it
    dk, dv, dq_all = lax.fori_loop(first, nq, query_block,
                                   (jnp.zeros_like(k_MxCxK), jnp.zeros_like(v_MxCxK), dq_all))
    return dq_all, (dk, dv)

  dq, (dk, dv) = lax.scan(key_block, jnp.zeros_like(q_blocks), jnp.arange(nk))
  return dq, dk, dv


_flash.defvjp(_flash_fwd, _flash_bwd)


def blocked_attention(q_BxTxNxK: Array, k_BxSxNxK: Array, v_BxSxNxK: Array, causal: bool,
                      block: int = BLOCK) -> Array:
  """softmax(q k^T / sqrt(K)) v with a causal mask if asked; returns [B, T, N, K]."""
  b, t, n, kd = q_BxTxNxK.shape
  s = k_BxSxNxK.shape[1]
  blk = min(block, max(t, s))

  def to_blocks(x_BxLxNxK, length):   # -> [n_blocks, M, Q, K], zero-padded
    padded = -(-length // blk) * blk
    x = jnp.pad(x_BxLxNxK, ((0, 0), (0, padded - length), (0, 0), (0, 0)))
    return x.transpose(0, 2, 1, 3).reshape(b * n, padded // blk, blk, kd).transpose(1, 0, 2, 3)

  o_blocks = _flash(to_blocks(q_BxTxNxK / math.sqrt(kd), t), to_blocks(k_BxSxNxK, s),
                    to_blocks(v_BxSxNxK, s), s, causal)
  nq = o_blocks.shape[0]
  o = o_blocks.transpose(1, 0, 2, 3).reshape(b, n, nq * blk, kd).transpose(0, 2, 1, 3)
  return o[:, :t]
