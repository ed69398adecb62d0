"""seqlab: how recurrent networks and transformers differ over long sequences.

`seqlab.load(point_dir) -> (model, params, config)` (seqlab/evaluate.py) is imported on
first use, so `import seqlab` stays light (no jax).
"""


def __getattr__(name):
  if name == 'load':
    from seqlab.evaluate import load
    return load
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
