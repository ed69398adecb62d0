"""Memory-efficient blocked attention: online softmax over key blocks.

Shape letters as in attention.py: B batch, T query positions, S key positions,
N heads, K head size; Q/C a query/key block length.

The reference is attention.attend (the paper's einsum, O(T S) memory). Here the
queries are cut into blocks of Q and, for each, the keys into blocks of C; the
softmax is accumulated block by block with a running maximum m and normaliser l
(the online softmax of Milakov & Gimelshein 2018, used by Rabe & Staats 2021 and
FlashAttention, Dao et al. 2022), so no [T, S] matrix is ever held. Key blocks
entirely above the causal diagonal are skipped (lax.cond), halving the work. Both
loops are rematerialised (jax.checkpoint), so the backward pass stores only the
per-block running statistics: memory grows as T, not T^2.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp

Array = jax.Array

BLOCK = 128   # query and key block length; T need not be a multiple of it


def blocked_attention(q_BxTxNxK: Array, k_BxSxNxK: Array, v_BxSxNxK: Array, causal: bool,
                      block: int = BLOCK) -> Array:
  """softmax(q k^T / sqrt(K)) v with a causal mask if asked; returns [B, T, N, K]."""
  b, t, n, kd = q_BxTxNxK.shape
  s = k_BxSxNxK.shape[1]
  bq, bk = min(block, t), min(block, s)
  tq, sk = -(-t // bq) * bq, -(-s // bk) * bk           # padded lengths
  q = jnp.pad(q_BxTxNxK, ((0, 0), (0, tq - t), (0, 0), (0, 0))) / math.sqrt(kd)
  k = jnp.pad(k_BxSxNxK, ((0, 0), (0, sk - s), (0, 0), (0, 0)))
  v = jnp.pad(v_BxSxNxK, ((0, 0), (0, sk - s), (0, 0), (0, 0)))
  # [nblocks, B, N, block, K]: heads folded into the batch of each block product.
  q_blocks = q.reshape(b, tq // bq, bq, n, kd).transpose(1, 0, 3, 2, 4)
  k_blocks = k.reshape(b, sk // bk, bk, n, kd).transpose(1, 0, 3, 2, 4)
  v_blocks = v.reshape(b, sk // bk, bk, n, kd).transpose(1, 0, 3, 2, 4)
  neg = jnp.finfo(jnp.float32).min

  def one_query_block(args):
    qi, q_BxNxQxK = args
    q_pos = qi * bq + jnp.arange(bq)

    @jax.checkpoint
    def key_block(carry, xs):
      kj, k_BxNxCxK, v_BxNxCxK = xs

      def attend_block(carry):
        m_BxNxQ, l_BxNxQ, acc_BxNxQxK = carry
        logits = jnp.einsum('bnqk,bnck->bnqc', q_BxNxQxK, k_BxNxCxK).astype(jnp.float32)
        k_pos = kj * bk + jnp.arange(bk)
        mask_QxC = k_pos[None, :] < s                      # padded keys
        if causal:
          mask_QxC = mask_QxC & (k_pos[None, :] <= q_pos[:, None])
        logits = jnp.where(mask_QxC, logits, neg)
        m_new = jnp.maximum(m_BxNxQ, logits.max(-1))
        p = jnp.exp(logits - m_new[..., None])
        scale = jnp.exp(m_BxNxQ - m_new)
        l_new = l_BxNxQ * scale + p.sum(-1)
        acc = acc_BxNxQxK * scale[..., None] + jnp.einsum(
            'bnqc,bnck->bnqk', p.astype(v_BxNxCxK.dtype), v_BxNxCxK)
        return m_new, l_new, acc

      if causal:  # a key block wholly after the query block adds nothing
        carry = jax.lax.cond(kj * bk <= qi * bq + bq - 1, attend_block, lambda c: c, carry)
      else:
        carry = attend_block(carry)
      return carry, None

    init = (jnp.full((b, n, bq), neg, jnp.float32), jnp.zeros((b, n, bq), jnp.float32),
            jnp.zeros((b, n, bq, kd), jnp.float32))
    (m, l, acc), _ = jax.lax.scan(
        key_block, init, (jnp.arange(sk // bk), k_blocks, v_blocks))
    return (acc / l[..., None]).astype(q_BxTxNxK.dtype)

  out_blocks = jax.lax.map(jax.checkpoint(one_query_block),
                           (jnp.arange(tq // bq), q_blocks))   # [nq, B, N, Q, K]
  out = out_blocks.transpose(1, 0, 3, 2, 4).reshape(b, tq, n, kd)
  return out[:, :t]
