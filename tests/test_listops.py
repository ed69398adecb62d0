"""ListOps: the evaluator against hand-evaluated expressions, the generator's grammar."""
import numpy as np
import pytest

from seqlab.data import listops


@pytest.mark.parametrize('expr, value', [
    ('[MAX 2 9 ]', 9),
    ('[MIN 4 7 1 8 ]', 1),
    ('[MED 3 1 8 ]', 3),
    ('[MED 1 2 ]', 1),                            # median 1.5 -> int 1 (LRA: int(np.median))
    ('[MED 1 4 6 9 ]', 5),                        # median 5.0
    ('[SM 5 6 7 ]', 8),                           # 18 mod 10
    ('[MAX 2 9 [MIN 4 7 ] 0 ]', 9),               # the LRA paper's example
    ('[SM [MAX 3 8 ] [MIN 9 [MED 2 5 7 ] ] 1 ]', 4),   # 8 + 5 + 1 = 14
    ('7', 7),
])
def test_evaluate_matches_hand_evaluation(expr, value):
  assert listops.evaluate(expr.split()) == value


def _parse_ok(tokens):
  """Checks the grammar: brackets balance, every operator has >= 2 arguments."""
  depth, args = 0, []
  for t in tokens:
    if t in listops.OPERATORS:
      if args:
        args[-1] += 1
      args.append(0)
      depth += 1
    elif t == listops.END:
      assert args.pop() >= 2
      depth -= 1
    else:
      assert t in [str(d) for d in range(10)]
      if args:
        args[-1] += 1
  return depth == 0


@pytest.mark.parametrize('seq_len', [4, 16, 200])
def test_batch_is_left_padded_labelled_and_within_length(seq_len):
  b = listops.make_batch(np.random.default_rng([0, 0, 3]), 16, seq_len)
  assert b['inputs'].shape == (16, seq_len) and b['targets'].shape == (16,)
  for x, y in zip(b['inputs'], b['targets']):
    n = int((x != 0).sum())
    assert (x[:seq_len - n] == 0).all() and (x[seq_len - n:] != 0).all()
    tokens = [listops.VOCAB[i] for i in x[seq_len - n:]]
    assert _parse_ok(tokens)
    assert listops.evaluate(tokens) == y and 0 <= y <= 9
  if seq_len == 200:  # expressions fill most of the budget
    assert (b['inputs'] != 0).sum(1).mean() > 0.5 * seq_len


def test_same_rng_same_batch():
  a = listops.make_batch(np.random.default_rng([1, 0, 5]), 8, 64)
  b = listops.make_batch(np.random.default_rng([1, 0, 5]), 8, 64)
  c = listops.make_batch(np.random.default_rng([1, 0, 6]), 8, 64)
  assert all((a[k] == b[k]).all() for k in a)
  assert not (a['inputs'] == c['inputs']).all()
