"""Multi-head self-attention and pre-LayerNorm transformer blocks.

Shape letters: B batch, T query positions, S key positions, N heads, K head size,
D model width. Attention is the einsum of Vaswani et al. (2017) for ONE example,
with the softmax in float32 and the mask built explicitly; the block vmaps it over
the batch at the call site.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def causal_mask(t: int, s: int | None = None) -> Array:
  """[T, S] boolean: query t may attend to key s iff s <= t."""
  s = t if s is None else s
  return jnp.arange(s)[None, :] <= jnp.arange(t)[:, None]


def attend(q_TxNxK: Array, k_SxNxK: Array, v_SxNxK: Array, mask_TxS: Array | None) -> Array:
  """softmax(q k^T / sqrt(K)) v for one example; returns [T, N, K]."""
  logits_NxTxS = jnp.einsum('tnk,snk->nts', q_TxNxK, k_SxNxK).astype(jnp.float32)
  logits_NxTxS = logits_NxTxS / math.sqrt(q_TxNxK.shape[-1])
  if mask_TxS is not None:
    logits_NxTxS = jnp.where(mask_TxS[None], logits_NxTxS, jnp.finfo(jnp.float32).min)
  weights_NxTxS = jax.nn.softmax(logits_NxTxS, axis=-1).astype(v_SxNxK.dtype)
  return jnp.einsum('nts,snk->tnk', weights_NxTxS, v_SxNxK)


# The attention kernels a model may use: name -> f(q, k, v, causal) on batched
# [B, T, N, K] arrays. Faster kernels register here beside the reference.
def _vmapped_einsum(q, k, v, causal):
  t, s = q.shape[1], k.shape[1]
  mask = causal_mask(t, s) if causal else None
  return jax.vmap(attend, in_axes=(0, 0, 0, None))(q, k, v, mask)


def _jax_dot_product(q, k, v, causal):
  return jax.nn.dot_product_attention(q, k, v, is_causal=causal)


ATTENTION_IMPLS = {'einsum': _vmapped_einsum, 'jax': _jax_dot_product}


def _blocked(q, k, v, causal):  # online-softmax blocks, O(T) memory (blocked_attention.py)
  from seqlab.models import blocked_attention
  return blocked_attention.blocked_attention(q, k, v, causal)


ATTENTION_IMPLS['blocked'] = _blocked


def _cudnn(q, k, v, causal):  # GPU, bf16/fp16; else XLA's, with a note (vendor_kernels.py)
  from seqlab.models import vendor_kernels
  return vendor_kernels.cudnn_attention(q, k, v, causal)


def _pallas(q, k, v, causal):  # TPU flash attention; else XLA's, with a note
  from seqlab.models import vendor_kernels
  return vendor_kernels.pallas_attention(q, k, v, causal)


ATTENTION_IMPLS.update(cudnn=_cudnn, pallas=_pallas)


class MultiHeadAttention(nnx.Module):
  def __init__(self, width: int, heads: int, *, rngs: nnx.Rngs, impl: str = 'einsum'):
    if width % heads:
      raise ValueError(f'model width {width} is not divisible by heads={heads}')
    self.heads = heads
    self.impl = impl
    init = jax.nn.initializers.lecun_normal()
    self.w_qkv = nnx.Param(init(rngs.params(), (width, 3, heads, width // heads)))
    self.w_out = nnx.Param(init(rngs.params(), (heads, width // heads, width)) / math.sqrt(2))

  def qkv(self, x_BxTxD: Array) -> tuple[Array, Array, Array]:
    """q, k, v [B, T, N, K]. Projections as plain [B T, D] x [D, 3 N K] products: the
    equivalent einsum ('btd,dcnk->cbtnk') made XLA:CPU emit a transposed product plus a
    full transpose copy, about half the layer's time at T=1024."""
    b, t, d = x_BxTxD.shape
    w_qkv = self.w_qkv[...]
    _, _, n, k = w_qkv.shape
    qkv = (x_BxTxD.reshape(b * t, d) @ w_qkv.reshape(d, 3 * n * k)).reshape(b, t, 3, n, k)
    return qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]

  def project_out(self, o_BxTxNxK: Array) -> Array:
    b, t, n, k = o_BxTxNxK.shape
    w_out = self.w_out[...]
    return (o_BxTxNxK.reshape(b * t, n * k) @ w_out.reshape(n * k, -1)).reshape(b, t, -1)

  def __call__(self, x_BxTxD: Array, causal: bool) -> Array:
    q, k, v = self.qkv(x_BxTxD)
    return self.project_out(ATTENTION_IMPLS[self.impl](q, k, v, causal))

  # Decoding with a preallocated KV cache {'k', 'v': [B, N, S, K]}, S the longest
  # context. Heads before positions, so one new query attends over its head's keys as a
  # batched matrix-vector product (a [B, S, N, K] cache made XLA transpose all of it at
  # every step: 17x slower at B=32, S=2048 on a 2-core CPU, 501 against 30 ms).
  def init_cache(self, batch: int, max_len: int, dtype) -> dict:
    _, _, n, k = self.w_qkv.shape
    return {'k': jnp.zeros((batch, n, max_len, k), dtype),
            'v': jnp.zeros((batch, n, max_len, k), dtype)}   # two buffers: both donated

  @staticmethod
  def _write(cache: dict, k_BxTxNxK: Array, v_BxTxNxK: Array, pos) -> dict:
    """The keys and values of positions pos..pos+T-1 written into the cache."""
    def put(buf, x):
      return jax.lax.dynamic_update_slice(buf, x.transpose(0, 2, 1, 3).astype(buf.dtype),
                                          (0, 0, pos, 0))
    return {'k': put(cache['k'], k_BxTxNxK), 'v': put(cache['v'], v_BxTxNxK)}

  def prefill(self, x_BxTxD: Array, cache: dict):
    """Causal attention over a prompt at positions 0..T-1 (this layer's kernel), its keys
    and values written to the cache."""
    q, k, v = self.qkv(x_BxTxD)
    out = self.project_out(ATTENTION_IMPLS[self.impl](q, k, v, True))
    return out, self._write(cache, k, v, 0)

  def decode(self, x_Bx1xD: Array, cache: dict, pos: Array):
    """One new position `pos`: its key and value written at pos, its query attending over
    cached positions <= pos: softmax(q k^T / sqrt(K)) v as in `attend`, softmax in
    float32, the mask explicit. O(S) work, the prefix never re-run."""
    q, k, v = self.qkv(x_Bx1xD)
    cache = self._write(cache, k, v, pos)
    q_BxNxK = q[:, 0]
    logits_BxNxS = jnp.einsum('bnk,bnsk->bns', q_BxNxK, cache['k']).astype(jnp.float32)
    logits_BxNxS = logits_BxNxS / math.sqrt(q_BxNxK.shape[-1])
    mask_S = jnp.arange(cache['k'].shape[2]) <= pos
    logits_BxNxS = jnp.where(mask_S, logits_BxNxS, jnp.finfo(jnp.float32).min)
    weights_BxNxS = jax.nn.softmax(logits_BxNxS, axis=-1).astype(cache['v'].dtype)
    o_BxNxK = jnp.einsum('bns,bnsk->bnk', weights_BxNxS, cache['v'])
    return self.project_out(o_BxNxK[:, None]), cache


class Block(nnx.Module):
  """Pre-LN block: x + MHA(LN(x)), then x + MLP(LN(x)) (Xiong et al. 2020)."""

  def __init__(self, width: int, heads: int, mlp_ratio: int, *, rngs: nnx.Rngs,
               impl: str = 'einsum'):
    self.ln1 = nnx.LayerNorm(width, rngs=rngs)
    self.attn = MultiHeadAttention(width, heads, rngs=rngs, impl=impl)
    self.ln2 = nnx.LayerNorm(width, rngs=rngs)
    self.mlp_in = nnx.Linear(width, mlp_ratio * width, rngs=rngs)
    self.mlp_out = nnx.Linear(mlp_ratio * width, width, rngs=rngs)

  def _residual(self, x_BxTxD: Array, attend_fn):
    """x + attention(LN(x)), then + MLP(LN(.)); attend_fn(u) -> (output, aux)."""
    a, aux = attend_fn(self.ln1(x_BxTxD))
    x_BxTxD = x_BxTxD + a
    return x_BxTxD + self.mlp_out(jax.nn.gelu(self.mlp_in(self.ln2(x_BxTxD)))), aux

  def __call__(self, x_BxTxD: Array, causal: bool) -> Array:
    return self._residual(x_BxTxD, lambda u: (self.attn(u, causal), None))[0]

  def prefill(self, x_BxTxD: Array, cache: dict):
    return self._residual(x_BxTxD, lambda u: self.attn.prefill(u, cache))

  def decode(self, x_Bx1xD: Array, cache: dict, pos: Array):
    return self._residual(x_Bx1xD, lambda u: self.attn.decode(u, cache, pos))


def sinusoidal_positions(t: int, width: int, start: Array | int = 0) -> Array:
  """[T, D] sinusoidal position codes of positions start..start+T-1 (Vaswani et al.
  2017, section 3.5)."""
  pos = (start + jnp.arange(t))[:, None]
  freq = jnp.exp(-math.log(10000.0) * jnp.arange(0, width, 2) / width)
  pe = jnp.zeros((t, width))
  pe = pe.at[:, 0::2].set(jnp.sin(pos * freq))
  return pe.at[:, 1::2].set(jnp.cos(pos * freq[: width // 2]))


class Transformer(nnx.Module):
  """A stack of pre-LN blocks with positions added to the input: [B,T,D] -> [B,T,D]."""

  def __init__(self, width: int, heads: int, layers: int, mlp_ratio: int, max_len: int,
               positions: str, *, rngs: nnx.Rngs, impl: str = 'einsum'):
    self.positions = positions
    if positions == 'learned':
      self.pos_emb = nnx.Param(0.02 * jax.random.normal(rngs.params(), (max_len, width)))
    self.blocks = nnx.List([Block(width, heads, mlp_ratio, rngs=rngs, impl=impl)
                            for _ in range(layers)])
    self.ln_f = nnx.LayerNorm(width, rngs=rngs)

  def _add_positions(self, x_BxTxD: Array, start: Array | int = 0) -> Array:
    t, d = x_BxTxD.shape[1:]
    if self.positions == 'learned':
      return x_BxTxD + jax.lax.dynamic_slice_in_dim(self.pos_emb[...], start, t)
    return x_BxTxD + sinusoidal_positions(t, d, start).astype(x_BxTxD.dtype)

  def __call__(self, x_BxTxD: Array, causal: bool) -> Array:
    t = x_BxTxD.shape[1]
    if self.positions == 'learned' and t > self.pos_emb.shape[0]:
      raise ValueError(f'sequence of {t} positions is longer than the {self.pos_emb.shape[0]} '
                       f'learned positions (model.max_len); use positions=sinusoidal or a '
                       f'larger max_len')
    x_BxTxD = self._add_positions(x_BxTxD)
    for block in self.blocks:
      x_BxTxD = block(x_BxTxD, causal)
    return self.ln_f(x_BxTxD)

  # Decoding: one KV cache per block, preallocated for max_len positions.
  def init_state(self, batch: int, max_len: int, dtype) -> list:
    if self.positions == 'learned' and max_len > self.pos_emb.shape[0]:
      raise ValueError(f'a context of {max_len} positions is longer than the '
                       f'{self.pos_emb.shape[0]} learned positions (model.max_len); use '
                       f'positions=sinusoidal or a larger max_len')
    return [block.attn.init_cache(batch, max_len, dtype) for block in self.blocks]

  def prefill(self, x_BxTxD: Array, caches: list):
    x_BxTxD, out = self._add_positions(x_BxTxD), []
    for block, c in zip(self.blocks, caches):
      x_BxTxD, c = block.prefill(x_BxTxD, c)
      out.append(c)
    return self.ln_f(x_BxTxD), out

  def step(self, x_BxD: Array, caches: list, pos: Array):
    x_Bx1xD, out = self._add_positions(x_BxD[:, None], pos), []
    for block, c in zip(self.blocks, caches):
      x_Bx1xD, c = block.decode(x_Bx1xD, c, pos)
      out.append(c)
    return self.ln_f(x_Bx1xD)[:, 0], out
