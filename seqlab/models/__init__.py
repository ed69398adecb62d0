"""Sequence models: an input embedding, a backbone from one table, and a head.

Models know nothing of data, optimisers or files: a task tells `ModelConfig` its
vocabulary (or input width), its output width and whether it reads every step
('per_step') or one summary of the sequence ('last').

Two tables say what exists: MODELS (name -> backbone) and KERNELS (name -> the kernels
that compute it, the reference first). `ModelConfig.kernel` is the one switch for every
family; in a sweep list 'MODEL:KERNEL' (e.g. 'lstm:fused') sets it for one entry.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.models import attention, cells, linear_rnn

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  name: str = 'lstm'                 # backbone, a key of MODELS
  hidden: int = 128                  # state size (recurrent) or model width (transformer)
  layers: int = 1                    # stacked layers / blocks
  vocab_size: int = 0                # token inputs if > 0, else `input_dim` real features
  input_dim: int = 1                 # width of real-valued inputs (adding problem: 2)
  num_outputs: int = 1               # head width: classes, vocabulary or 1 for regression
  readout: str = 'per_step'          # 'per_step' (a prediction at every t) or 'last'
  recurrent_init: str = 'orthogonal' # W_hh init: orthogonal | lecun_normal | identity
  spectral_radius: float = 1.0       # rho of each W_hh block (orthogonal, identity)
  forget_bias: float = 1.0           # LSTM forget-gate bias
  gate_init: str = 'constant'        # lstm, gru gate biases: 'constant' or 'chrono' (GATE_INITS)
  chrono_t_max: int = 0              # chrono's T_max (0: max_len, the length it is built for)
  update_bias: float = 0.0           # GRU update-gate bias (z keeps the state; +2: z ~ 0.88)
  unroll: int = 1                    # lax.scan unroll factor
  heads: int = 4                     # attention heads
  mlp_ratio: int = 4                 # transformer MLP width / model width
  positions: str = 'sinusoidal'      # 'sinusoidal' or 'learned'
  pool: str = 'cls'                  # transformer 'last' readout: 'cls' token or 'mean'
  max_len: int = 1024                # longest sequence (learned positions, CLS included)
  kernel: str = 'auto'               # a kernel of KERNELS[name]; 'auto': the family's default
  dtype: str = 'float32'             # compute dtype (DTYPES); parameters stay float32 (merge)
  r_min: float = 0.9                 # lru: eigenvalue ring r_min <= |lambda| (Orvieto et al. 2023)
  r_max: float = 0.999               # lru: |lambda| <= r_max
  max_phase: float = 6.283185307     # lru: arg(lambda) ~ U[0, max_phase]


class RecurrentBackbone(nnx.Module):
  """Recurrent stack; always causal, so `causal` is accepted and ignored."""
  is_recurrent = True

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.stack = cells.RecurrentStack(
        cfg.name, cfg.hidden, cfg.hidden, cfg.layers, rngs=rngs, init=cfg.recurrent_init,
        spectral_radius=cfg.spectral_radius, forget_bias=cfg.forget_bias, unroll=cfg.unroll,
        impl=cfg.kernel, gate_init=cfg.gate_init,
        chrono_t_max=cfg.chrono_t_max or cfg.max_len, update_bias=cfg.update_bias)

  def __call__(self, e_BxTxD: Array, causal: bool = True) -> Array:
    return self.stack(e_BxTxD)

  def init_state(self, batch: int, max_len: int, dtype) -> list:
    del max_len  # the state does not grow with the context
    return self.stack.zero_states(batch, dtype)

  def prefill(self, e_BxTxD: Array, state: list):
    return self.stack.prefill(e_BxTxD, state)

  def step(self, e_BxD: Array, state: list, pos: Array):
    del pos
    return self.stack.step(e_BxD, state)


class AttentionBackbone(nnx.Module):
  is_recurrent = False

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    self.net = attention.Transformer(cfg.hidden, cfg.heads, cfg.layers, cfg.mlp_ratio,
                                     cfg.max_len, cfg.positions, rngs=rngs,
                                     impl=cfg.kernel)

  def __call__(self, e_BxTxD: Array, causal: bool) -> Array:
    return self.net(e_BxTxD, causal)

  def init_state(self, batch: int, max_len: int, dtype) -> list:
    return self.net.init_state(batch, max_len, dtype)

  def prefill(self, e_BxTxD: Array, state: list):
    return self.net.prefill(e_BxTxD, state)

  def step(self, e_BxD: Array, state: list, pos: Array):
    return self.net.step(e_BxD, state, pos)


# name -> backbone constructor (cfg, rngs). New model families register here.
MODELS: dict[str, Callable[[ModelConfig, nnx.Rngs], nnx.Module]] = {
    'rnn': RecurrentBackbone,
    'lstm': RecurrentBackbone,
    'gru': RecurrentBackbone,
    'transformer': AttentionBackbone,
    'lru': linear_rnn.LinearRecurrentBackbone,
    'mingru': linear_rnn.LinearRecurrentBackbone,
}

# name -> the kernels that compute it, the reference first; each fast kernel is tested
# equal to the reference on outputs and gradients. 'auto' picks the first.
KERNELS: dict[str, tuple[str, ...]] = {
    'rnn': ('scan',),
    'lstm': ('scan', 'fused', 'cudnn'),         # fused: fused_rnn; cudnn: vendor_kernels
    'gru': ('scan', 'fused'),
    'lru': ('parallel', 'sequential'),          # chunked associative scan | lax.scan
    'mingru': ('parallel', 'sequential'),
    'transformer': ('einsum', 'blocked', 'jax', 'cudnn', 'pallas'),  # blocked_attention.py;
                                                # cudnn, pallas: vendor_kernels.py
}


DTYPES = ('float32', 'bfloat16', 'float16')   # compute dtypes


def cast_floats(tree, dtype):
  """Every floating-point leaf of `tree` as `dtype` (integer and complex leaves kept)."""
  dtype = jnp.dtype(dtype)
  return jax.tree.map(
      lambda x: x.astype(dtype) if jnp.issubdtype(x.dtype, jnp.floating) else x, tree)


def merge(graphdef, params, *rest, dtype: str | None = None):
  """nnx.merge in the compute dtype: float32 master parameters (and optimiser state), the
  forward pass in `dtype` (default: the model's cfg.dtype), as in jmp's mixed precision;
  gradients flow back through the cast to the float32 parameters. Losses, softmax
  statistics and gradient norms are computed in float32 by their callers."""
  model = nnx.merge(graphdef, params, *rest)
  dtype = dtype or getattr(getattr(model, 'cfg', None), 'dtype', 'float32')
  if jnp.dtype(dtype) == jnp.float32:
    return model
  if dtype not in DTYPES:
    raise ValueError(f'model.dtype={dtype!r}; allowed: {", ".join(DTYPES)}')
  return nnx.merge(graphdef, cast_floats(params, dtype), *rest)


def split_name(name: str) -> tuple[str, str]:
  """'lstm:fused' -> ('lstm', 'fused'); 'lstm' -> ('lstm', 'auto'); a +VARIANT suffix is
  dropped ('lstm:fused+chrono' -> ('lstm', 'fused'))."""
  model, _, kernel = name.partition('+')[0].partition(':')
  return model, kernel or 'auto'


# A model name's +VARIANT suffix (MODEL[:KERNEL]+VARIANT, e.g. 'gru+chrono',
# 'transformer:blocked+learned') -> (the families it applies to, the ModelConfig fields it
# sets). The init controls of the long-range study: chrono initialisation of the gate
# biases (Tallec & Ollivier 2018) and a GRU that starts with its update gate mostly shut.
VARIANTS: dict[str, tuple[tuple[str, ...], dict]] = {
    'learned': (('transformer',), {'positions': 'learned'}),
    'chrono': (('lstm', 'gru'), {'gate_init': 'chrono'}),
    'bias2': (('gru',), {'update_bias': 2.0}),
    'forget1': (('lstm',), {'forget_bias': 1.0}),   # the usual forget bias (a paper control)
}


def split_variant(name: str) -> tuple[str, dict]:
  """'gru:fused+chrono' -> ('gru:fused', {'gate_init': 'chrono'}); 'lstm' -> ('lstm', {}).
  ValueError (one line) for an unknown suffix or one the family does not take."""
  base, _, variant = name.partition('+')
  if not variant:
    return base, {}
  if variant not in VARIANTS:
    raise ValueError(f'unknown model variant {name!r}; allowed suffixes: '
                     f'{", ".join("+" + v for v in VARIANTS)}')
  families, fields = VARIANTS[variant]
  if base.split(':')[0] not in families:
    raise ValueError(f'{name!r}: +{variant} applies only to {", ".join(families)}')
  return base, dict(fields)


# What 'auto' runs off a CPU: the vendor kernel where it serves (platform, model, compute
# dtype), else the family's reference. On a CPU 'auto' is the reference. These choices
# are the vendor kernels, not yet timed against the others on an accelerator here: the
# device script (experiments/throughput.py:gpu) measures them.
AUTO = {('gpu', 'lstm', 'float32'): 'cudnn', ('gpu', 'lstm', 'bfloat16'): 'cudnn',
        ('gpu', 'lstm', 'float16'): 'cudnn',
        ('gpu', 'transformer', 'bfloat16'): 'cudnn', ('gpu', 'transformer', 'float16'): 'cudnn',
        ('tpu', 'transformer', 'float32'): 'pallas', ('tpu', 'transformer', 'bfloat16'): 'pallas'}


def resolve_kernel(model: str, kernel: str, dtype: str = 'float32',
                   platform: str | None = None) -> str:
  """The kernel `model` runs with: `kernel`, or for 'auto' the AUTO choice for the
  platform (default: jax's) and compute dtype, else the family's reference."""
  allowed = KERNELS[model]
  if kernel == 'auto':
    return AUTO.get((platform or jax.default_backend(), model, dtype), allowed[0])
  if kernel not in allowed:
    raise ValueError(f'model.kernel={kernel!r} is not a kernel of {model}; allowed: auto, '
                     f'{", ".join(allowed)}')
  return kernel


def backbone(cfg: ModelConfig, rngs: nnx.Rngs) -> nnx.Module:
  """MODELS[cfg.name] built with its kernel resolved ('auto' -> the family's default)."""
  kernel = resolve_kernel(cfg.name, cfg.kernel, cfg.dtype)
  return MODELS[cfg.name](dataclasses.replace(cfg, kernel=kernel), rngs)


class SequenceModel(nnx.Module):
  """inputs [B, T] ints or [B, T, input_dim] -> outputs [B, T, O] or [B, O]."""

  def __init__(self, cfg: ModelConfig, rngs: nnx.Rngs):
    if cfg.name not in MODELS:
      raise ValueError(f'unknown model {cfg.name!r}; allowed: {", ".join(MODELS)}')
    self.cfg = cfg
    if cfg.vocab_size > 0:
      self.embed = nnx.Embed(cfg.vocab_size, cfg.hidden, rngs=rngs)
    else:
      self.embed = nnx.Linear(cfg.input_dim, cfg.hidden, rngs=rngs)
    self.backbone = backbone(cfg, rngs)
    self.uses_cls = (not self.backbone.is_recurrent and cfg.readout == 'last'
                     and cfg.pool == 'cls')
    if self.uses_cls:
      self.cls = nnx.Param(0.02 * jax.random.normal(rngs.params(), (cfg.hidden,)))
    self.head = nnx.Linear(cfg.hidden, cfg.num_outputs, rngs=rngs)

  def embed_inputs(self, inputs: Array) -> Array:
    """[B, T] or [B, T, input_dim] -> embedded inputs e [B, T, D], in the dtype of the
    embedding's parameters (the compute dtype under `merge`)."""
    if jnp.issubdtype(inputs.dtype, jnp.floating):
      return self.embed(inputs.astype(self.embed.kernel.dtype))
    # nnx.Embed computes in float32 whatever its table's dtype: back to the table's
    return self.embed(inputs).astype(self.embed.embedding.dtype)

  def features(self, e_BxTxD: Array) -> Array:
    """Backbone and readout: [B, T, D] (per_step) or [B, D] (last)."""
    per_step = self.cfg.readout == 'per_step'
    if self.uses_cls:
      cls_Bx1xD = jnp.broadcast_to(self.cls[...], (e_BxTxD.shape[0], 1, e_BxTxD.shape[2]))
      e_BxTxD = jnp.concatenate([cls_Bx1xD.astype(e_BxTxD.dtype), e_BxTxD], axis=1)
    h_BxTxD = self.backbone(e_BxTxD, causal=per_step)
    if per_step:
      return h_BxTxD
    if self.backbone.is_recurrent:
      return h_BxTxD[:, -1]              # h_T: the recurrent state summarises the sequence
    return h_BxTxD[:, 0] if self.uses_cls else h_BxTxD.mean(axis=1)

  def __call__(self, inputs: Array) -> Array:
    return self.head(self.features(self.embed_inputs(inputs)))

  # ------------------------------------------------------------------------ decoding
  # A per-step model generates one position at a time from a cache {'pos', 'state'}:
  # recurrent backbones carry a fixed-size state (O(1) time and memory per token), the
  # transformer a preallocated KV cache of max_len positions (O(max_len) per token).
  # prefill(prompt) then decode(token) gives the parallel forward's outputs.
  def init_cache(self, batch: int, max_len: int, dtype=jnp.float32) -> dict:
    """An empty cache for `batch` sequences of up to max_len positions."""
    if self.cfg.readout != 'per_step':
      raise ValueError(f'decoding needs a per-step model; this one reads out '
                       f'{self.cfg.readout!r}')
    return {'pos': jnp.zeros((), jnp.int32),
            'state': self.backbone.init_state(batch, max_len, dtype)}

  def prefill(self, inputs: Array, cache: dict) -> tuple[Array, dict]:
    """The prompt [B, T] (or [B, T, input_dim]) in one parallel pass, from a fresh cache:
    (outputs [B, T, O], the cache after position T-1)."""
    h_BxTxD, state = self.backbone.prefill(self.embed_inputs(inputs), cache['state'])
    return self.head(h_BxTxD), {'pos': cache['pos'] + inputs.shape[1], 'state': state}

  def decode(self, inputs: Array, cache: dict) -> tuple[Array, dict]:
    """One position: inputs [B] (or [B, input_dim]) -> (outputs [B, O], the next cache)."""
    h_BxD, state = self.backbone.step(self.embed_inputs(inputs), cache['state'], cache['pos'])
    return self.head(h_BxD), {'pos': cache['pos'] + 1, 'state': state}


def count_params(tree) -> int:
  return int(sum(x.size for x in jax.tree.leaves(tree)))


@functools.lru_cache(maxsize=4096)
def num_params(cfg: ModelConfig) -> int:
  """Parameter count without allocating (abstract init; remembered per config, since
  size_to_budget asks ~12 of them for each point and a sweep sizes each model often)."""
  model = nnx.eval_shape(lambda: SequenceModel(cfg, nnx.Rngs(0)))
  return count_params(nnx.state(model, nnx.Param))


def size_to_budget(cfg: ModelConfig, budget: int) -> ModelConfig:
  """The config whose `hidden` brings the parameter count closest to `budget`.

  Fair comparisons hold the parameter count fixed across models (Bai et al. 2018
  size every model to about the same number of weights).
  """
  quantum = cfg.heads * 2 if cfg.name == 'transformer' else 2
  lo, hi = 1, 4096 // quantum
  while lo < hi:  # smallest multiple whose count reaches the budget
    mid = (lo + hi) // 2
    if num_params(dataclasses.replace(cfg, hidden=mid * quantum)) < budget:
      lo = mid + 1
    else:
      hi = mid
  candidates = [dataclasses.replace(cfg, hidden=m * quantum) for m in {max(lo - 1, 1), lo}]
  return min(candidates, key=lambda c: abs(num_params(c) - budget))


def build(cfg: ModelConfig, seed: int) -> SequenceModel:
  return SequenceModel(cfg, nnx.Rngs(params=seed))
