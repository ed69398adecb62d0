"""ListOps (Nangia & Bowman 2018) as in the Long Range Arena (Tay et al. 2021).

Grammar of LRA's generator (lra_benchmarks/data/listops.py): an expression is a digit
0-9 or `[OP e_1 ... e_k ]`, k in 2..max_args, OP in MAX, MIN, MED (int of the median),
SM (sum mod 10); the label is the expression's value 0-9. LRA draws trees and keeps
those of 500-2000 tokens; here a tree is grown inside a token budget of T, so any
length runs with no download and no rejection loop. Sequences are left-padded to T
(id 0), so a recurrent model's h_T reads the closing bracket.
Tokens: 0 pad, 1..10 digits 0..9, then [MIN [MAX [MED [SM ].
"""
from __future__ import annotations

import numpy as np

OPERATORS = ('[MIN', '[MAX', '[MED', '[SM')
END = ']'
VOCAB = ['<pad>'] + [str(d) for d in range(10)] + list(OPERATORS) + [END]
TOKEN_ID = {t: i for i, t in enumerate(VOCAB)}
NUM_CLASSES = 10
MAX_ARGS = 10       # LRA: max_args=10
MAX_DEPTH = 10      # LRA: max_depth=10
LEAF_P = 0.25       # probability that a node with room left is a digit (LRA VALUE_P)


def apply(op: str, args: list[int]) -> int:
  if op == '[MIN':
    return min(args)
  if op == '[MAX':
    return max(args)
  if op == '[MED':
    return int(np.median(args))
  if op == '[SM':
    return sum(args) % 10
  raise ValueError(f'unknown ListOps operator {op!r}; allowed: {", ".join(OPERATORS)}')


def evaluate(tokens: list[str]) -> int:
  """Value of a token list such as ['[MAX', '2', '9', ']']; a stack machine."""
  stack: list = []
  for t in tokens:
    if t == END:
      args = []
      while not isinstance(stack[-1], str):
        args.append(stack.pop())
      stack.append(apply(stack.pop(), args[::-1]))
    elif t in OPERATORS:
      stack.append(t)
    else:
      stack.append(int(t))
  if len(stack) != 1:
    raise ValueError(f'malformed ListOps expression: {" ".join(tokens)}')
  return stack[0]


def generate(rng: np.random.Generator, budget: int, depth: int = 0) -> list[str]:
  """A random expression of at most `budget` tokens (budget >= 1).

  Each argument is a digit with probability LEAF_P (one token); the rest of the budget
  is split among the operator arguments, so expressions fill most of the budget, as
  LRA's kept lengths sit near the maximum."""
  if budget < 4 or depth >= MAX_DEPTH:
    return [str(int(rng.integers(10)))]
  k = int(rng.integers(2, min(MAX_ARGS, budget - 2) + 1))
  is_leaf = rng.random(k) < LEAF_P
  if depth + 1 >= MAX_DEPTH:
    is_leaf[:] = True
  inner = budget - 2 - int(is_leaf.sum())     # tokens left for the operator arguments
  n_ops = int((~is_leaf).sum())
  if n_ops and inner < 4 * n_ops:             # too little room: those become digits too
    is_leaf[:] = True
    n_ops = 0
  shares = np.ones(k, np.int64)
  if n_ops:
    shares[~is_leaf] = 4 + rng.multinomial(inner - 4 * n_ops, rng.dirichlet(np.ones(n_ops)))
  out = [OPERATORS[int(rng.integers(len(OPERATORS)))]]
  for s, leaf in zip(shares, is_leaf):
    out += [str(int(rng.integers(10)))] if leaf else generate(rng, int(s), depth + 1)
  return out + [END]


def make_batch(rng: np.random.Generator, batch_size: int, seq_len: int) -> dict:
  """inputs [B, T] int32 left-padded with 0, targets [B] int32."""
  x_BxT = np.zeros((batch_size, seq_len), np.int32)
  y_B = np.zeros(batch_size, np.int32)
  for b in range(batch_size):
    expr = generate(rng, seq_len)
    x_BxT[b, seq_len - len(expr):] = [TOKEN_ID[t] for t in expr]
    y_B[b] = evaluate(expr)
  return {'inputs': x_BxT, 'targets': y_B}
