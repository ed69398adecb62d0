"""The torch baselines of the throughput benchmark (seqlab/measure/benchmark.py):
torch.nn.LSTM and an SDPA attention layer, timed like the JAX layers (same shapes, same
threads, an Adam step). torch is optional: pip install -r requirements-bench.txt."""
from __future__ import annotations

import statistics

from seqlab.measure import benchmark


def torch_available() -> bool:
  try:
    import torch  # noqa: F401
    return True
  except ImportError:
    return False


def measure_torch(name: str, bc: benchmark.BenchConfig, seq_len: int) -> dict:
  """torch.nn.LSTM or an SDPA attention layer, Adam step, same shapes, same threads; on
  CUDA when torch sees a GPU (cuDNN's LSTM, its fused SDPA); in bc.dtype through
  torch.autocast (float32 parameters, as seqlab's mixed precision)."""
  import contextlib
  import torch
  torch.set_num_threads(benchmark.usable_cores())
  torch.manual_seed(0)
  device = 'cuda' if torch.cuda.is_available() else 'cpu'
  autocast = (contextlib.nullcontext if bc.dtype == 'float32' else
              lambda: torch.autocast(device, dtype=getattr(torch, bc.dtype)))
  sync = torch.cuda.synchronize if device == 'cuda' else (lambda: None)
  d = bc.hidden
  if name == 'torch_lstm':
    net = torch.nn.LSTM(d, d, batch_first=True)
    fwd = lambda e: net(e)[0]
  else:
    qkv, out = torch.nn.Linear(d, 3 * d, bias=False), torch.nn.Linear(d, d, bias=False)
    net = torch.nn.ModuleList([qkv, out])
    k = d // bc.heads

    def fwd(e):
      b, t, _ = e.shape
      q_, k_, v_ = qkv(e).view(b, t, 3, bc.heads, k).permute(2, 0, 3, 1, 4)
      o = torch.nn.functional.scaled_dot_product_attention(q_, k_, v_, is_causal=True)
      return out(o.transpose(1, 2).reshape(b, t, d))
  net = net.to(device)
  opt = torch.optim.Adam(net.parameters(), lr=1e-3)
  e = torch.randn(bc.batch, seq_len, d, device=device)

  def train_step():
    opt.zero_grad(set_to_none=True)
    with autocast():
      loss = (fwd(e).float() ** 2).mean()
    loss.backward()
    opt.step()
    sync()

  def infer():
    with torch.no_grad(), autocast():
      fwd(e)
    sync()

  # torch runs eagerly on a CPU (a call returns when its work is done); on CUDA, sync()
  return dict(step_samples=benchmark._times(train_step, (), bc), compile_s=0.0, peak_memory_bytes=None,
              infer_s=statistics.median(benchmark._times(infer, (), bc)))
