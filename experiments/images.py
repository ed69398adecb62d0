"""Sequential images: classify an image read one pixel per step, from the last state
(recurrent) or the pooled transformer; the long-range study's sweep, table and figure.

  python launch.py --config=experiments/images.py                       # digits, offline
  python launch.py --config=experiments/images.py --tasks=smnist,psmnist --seq_lens=784
  python launch.py --config=experiments/images.py --tasks=scifar --seq_lens=1024 \
      --config.task.pixels=tokens
  python launch.py --config=experiments/images.py --tasks=smnist --seq_lens=784 \
      --config.task.dataset= --config.task.path='mnist/*.parquet'

Tasks (seqlab/data/images.py): digits and pdigits (scikit-learn's 8x8 digits, T=64, no
download), smnist and psmnist (Hub ylecun/mnist, T=784), scifar (Hub uoft-cs/cifar10,
1024 grey pixels, LRA Image). The last tenth of the training rows is the validation
split the lr is chosen on; the test split is reported. The published numbers at MNIST's
own scale are in experiments/paper.py.
"""
import ml_collections

from experiments import long_range


def get_config(arg: str = ''):
  c = long_range.get_config()           # the same models, training and lr selection
  c.task = ml_collections.ConfigDict(dict(
      name='digits', seq_len=64,
      dataset='auto',                   # each task's default; a Hub id; '' reads `path`
      path='',                          # local .parquet/.csv/.jsonl files or an image folder
      image_column='auto', label_column='label',
      split='train', eval_split='test',  # Hub splits ('' holds out every 10th row)
      pixels='real',                    # 'real' (one grey value in [0, 1]) or 'tokens' (256)
      eval_fraction=0.1, valid_fraction=0.1,
      revision=''))                     # a Hub dataset's commit sha or tag: pin one for a
                                        # paper ('' reads its default branch, which moves)
  c.sweep.models = ['rnn', 'lstm', 'gru', 'transformer']
  c.sweep.tasks = ['digits', 'pdigits']
  c.sweep.seq_lens = [64]
  if arg:
    raise ValueError(f'unknown images variant {arg!r}; allowed: (none)')
  return c
