"""Real text through Hugging Face `datasets`: loading, byte/char tokens, (seed, step) batches.

Knows nothing of models or training. Sources:
  * a Hub id (`stanfordnlp/imdb`, `karpathy/tiny_shakespeare`, `wikitext` + config name),
    loaded with `datasets.load_dataset` (needs the network; offline is a one-line error);
  * local files or a glob (.txt, .csv, .jsonl/.json, .parquet) through the same `datasets`
    builders ('text', 'csv', 'json', 'parquet');
  * `stdlib`: the running interpreter's own standard-library sources, so every fresh
    machine has a real corpus with no download.

Tokens: 'byte' (UTF-8 bytes, ids 1..256) or 'char' (the training split's sorted characters,
ids 1..V, unseen characters -> V+1). Id 0 is padding. No tokenizer download.

Batches are a pure function of (seed, split, step): example i of the stream (i = step * B + b)
lies in epoch e = i // N and is item perm_e[i % N] of a permutation seeded by (seed, split, e).
So resume is exact, and a host makes only its rows by index (`process_index/process_count`).
Shapes: tokens [B, T] int32, LM targets [B, T] int32, LM masks [B, T] float32, labels [B] int32.
"""
from __future__ import annotations

import dataclasses
import glob
import math
import os
import sysconfig

import numpy as np

PAD = 0
FORMATS = {'.txt': 'text', '.text': 'text', '.csv': 'csv', '.jsonl': 'json', '.json': 'json',
           '.parquet': 'parquet'}
TOKENIZERS = ('byte', 'char')


# ------------------------------------------------------------------------------ loading
def _datasets():
  """`datasets`, quiet: its import-time INFO lines and progress bars would otherwise reach
  stderr through absl's handler and break the one-line error contract."""
  import logging
  logging.getLogger('datasets').setLevel(logging.WARNING)
  import datasets
  # CRITICAL: a parser's failure is also logged at ERROR before it is raised, and the
  # raised error is the one line the user gets (load_local, load_hub)
  datasets.utils.logging.set_verbosity(logging.CRITICAL)
  datasets.disable_progress_bars()
  return datasets


def _offline() -> bool:
  return os.environ.get('HF_DATASETS_OFFLINE', '0').lower() in ('1', 'true', 'yes') or \
      os.environ.get('HF_HUB_OFFLINE', '0').lower() in ('1', 'true', 'yes')


def load_local(path: str, split_name: str = 'train'):
  """A glob or file (.txt/.csv/.jsonl/.parquet) -> datasets.Dataset through its builder.

  Text files are one row per file (sample_by='document'), so newlines survive for LM.
  """
  datasets = _datasets()
  files = sorted(glob.glob(os.path.expanduser(path)))
  if not files:
    raise OSError(f'no file matches task.path={path!r}; give an existing file or glob '
                  f'(.txt, .csv, .jsonl, .parquet)')
  exts = {os.path.splitext(f)[1].lower() for f in files}
  if len(exts) != 1 or next(iter(exts)) not in FORMATS:
    raise ValueError(f'task.path={path!r} matches files of type {sorted(exts)}; allowed: one '
                     f'of {", ".join(sorted(FORMATS))}')
  builder = FORMATS[exts.pop()]
  for f in files:
    check_file(f, builder, path)
  kwargs = {'sample_by': 'document'} if builder == 'text' else {}
  import tempfile
  # Local files need no cached copy: the builder writes its Arrow files into a folder of
  # its own that is gone after the load (the rows are kept in memory), so a failed load
  # leaves nothing in ~/.cache/huggingface and a good one fills no cache either.
  with tempfile.TemporaryDirectory(prefix='seqlab-datasets-') as cache:
    try:
      ds = datasets.load_dataset(builder, data_files={split_name: files}, split=split_name,
                                 cache_dir=cache, keep_in_memory=True, **kwargs)
    except Exception as e:  # parse errors from the builders: keep to one line
      if 'corresponds to no data' in str(e):
        raise ValueError(f'the dataset at task.path={path!r} is empty (no rows); give files '
                         f'with at least 2 rows of text') from None
      raise ValueError(f'cannot read task.path={path!r} with the {builder!r} builder: '
                       f'{_root_cause(e)}') from None
  return ds


def _root_cause(e: BaseException) -> str:
  """The first line of the innermost cause of `e` (datasets wraps a parser's error in
  'An error occurred while generating the dataset'), with its type."""
  seen = set()
  while (e.__cause__ or e.__context__) is not None and id(e) not in seen:
    seen.add(id(e))
    e = e.__cause__ or e.__context__
  text = str(e).strip().splitlines()[0][:200] if str(e).strip() else ''
  return f'{type(e).__name__}: {text}' if text else type(e).__name__


def check_file(f: str, builder: str, path: str) -> None:
  """A data file is what its name says before `datasets` reads it (or writes anything):
  .parquet starts and ends with PAR1; text, CSV and JSON lines are UTF-8 text without
  NUL bytes. A binary file given as text is then one line naming the file and the first
  bad byte, not a builder's 'An error occurred while generating the dataset'."""
  allowed = 'UTF-8 .txt, .csv or .jsonl files, or .parquet files'
  try:
    with open(f, 'rb') as fh:
      if builder == 'parquet':
        head = fh.read(4)
        fh.seek(max(os.path.getsize(f) - 4, 0))
        if head != b'PAR1' or fh.read(4) != b'PAR1':
          raise ValueError(f'task.path={path!r}: {f} is not a Parquet file (no PAR1 '
                           f'marks); give {allowed}')
        return
      import codecs
      decoder = codecs.getincrementaldecoder('utf-8')()
      at = 0
      while chunk := fh.read(1 << 20):
        nul = chunk.find(b'\0')
        try:
          decoder.decode(chunk if nul < 0 else chunk[:nul])
        except UnicodeDecodeError as e:
          raise ValueError(f'task.path={path!r}: {f} is not UTF-8 text (byte {at + e.start} '
                           f'is 0x{e.object[e.start]:02x}; a binary file?); give '
                           f'{allowed}') from None
        if nul >= 0:
          raise ValueError(f'task.path={path!r}: {f} holds a NUL byte at byte {at + nul} (a '
                           f'binary file?); give {allowed}')
        at += len(chunk)
      decoder.decode(b'', final=True)
  except UnicodeDecodeError:
    raise ValueError(f'task.path={path!r}: {f} ends inside a UTF-8 character (a binary or '
                     f'cut file?); give {allowed}') from None
  except OSError as e:
    raise OSError(f'cannot read task.path={path!r}: {f}: {e.strerror or e}') from None


def check_revision(o: dict, hub: bool) -> None:
  """task.revision is a Hub dataset's commit, tag or branch: refused (one line) where
  no Hub dataset is read."""
  if o.get('revision') and not hub:
    raise ValueError(f'task.revision={o["revision"]!r} pins a Hub dataset, and '
                     f'task.dataset={o["dataset"]!r} reads none; give task.dataset=<Hub id>, '
                     f"or set task.revision=''")


def load_hub(dataset: str, config_name: str | None, split: str, revision: str = ''):
  """A Hub dataset split at `revision` (a commit sha, tag or branch; '' the dataset's
  default branch, which moves); a one-line OSError when the Hub cannot be reached."""
  datasets = _datasets()
  hint = ('the Hugging Face Hub is not reachable here; use task.path=<local files> or the '
          'offline default task.dataset=stdlib')
  if _offline():
    raise OSError(f'task.dataset={dataset!r} needs the network but HF_DATASETS_OFFLINE is set; '
                  + hint)
  if not hub_reachable():  # else `datasets` retries for half a minute before failing
    raise OSError(f'cannot load task.dataset={dataset!r}: the Hub ({hub_endpoint()}) did not '
                  f'answer within {HUB_PROBE_S:g}s; ' + hint + ' (a dataset already in your '
                  f'cache loads with HF_DATASETS_OFFLINE=1)')
  try:
    return datasets.load_dataset(dataset, config_name or None, split=split,
                                 revision=revision or None)
  except (ConnectionError, TimeoutError, OSError) as e:
    raise OSError(f'cannot load task.dataset={dataset!r} (split {split!r}): '
                  f'{type(e).__name__}; ' + hint) from None
  except ValueError as e:  # unknown split/config: datasets lists the allowed ones
    raise ValueError(f'task.dataset={dataset!r}: {str(e).splitlines()[0]}') from None


HUB_PROBE_S = 3.0   # seconds to wait for the Hub's TCP port before calling it unreachable


def hub_endpoint() -> str:
  return os.environ.get('HF_ENDPOINT', 'https://huggingface.co').rstrip('/')


def hub_reachable(timeout_s: float = HUB_PROBE_S) -> bool:
  """Whether the Hub's host accepts a TCP connection (through HTTPS_PROXY when set,
  whose host is then the one asked)."""
  import socket
  import threading
  import urllib.parse
  proxy = os.environ.get('HTTPS_PROXY') or os.environ.get('https_proxy')
  url = urllib.parse.urlsplit(proxy or hub_endpoint())
  port = url.port or (443 if url.scheme == 'https' else 80)
  answered = []

  def probe():  # in a thread: a name lookup is not bounded by the socket's timeout
    try:
      socket.create_connection((url.hostname, port), timeout=timeout_s).close()
      answered.append(True)
    except OSError:
      pass

  t = threading.Thread(target=probe, daemon=True)
  t.start()
  t.join(timeout_s)
  return bool(answered)


def stdlib_files() -> list[str]:
  """The interpreter's top-level standard-library .py files, sorted (a fixed list)."""
  root = sysconfig.get_paths()['stdlib']
  return sorted(glob.glob(os.path.join(root, '*.py')))


def check_column(ds, column: str, option: str) -> None:
  if column not in ds.column_names:
    raise ValueError(f'{option}={column!r} is not a column of the dataset; available: '
                     f'{", ".join(ds.column_names)}')


def split_rows(n_rows: int, eval_fraction: float) -> tuple[np.ndarray, np.ndarray]:
  """Held-out rows by a fixed stride (every k-th row), so the split never depends on a seed."""
  if n_rows < 2:
    raise ValueError(f'the dataset has {n_rows} row(s); a train/held-out split needs at least 2 '
                     f'(or give a separate eval split)')
  k = max(2, int(round(1.0 / eval_fraction)))
  idx = np.arange(n_rows)
  return idx[idx % k != k - 1], idx[idx % k == k - 1]


# ------------------------------------------------------------------------------- tokens
@dataclasses.dataclass(frozen=True)
class Tokenizer:
  kind: str                     # 'byte' or 'char'
  chars: str = ''               # 'char': the training split's sorted alphabet

  @property
  def vocab_size(self) -> int:  # padding id 0 included
    return 257 if self.kind == 'byte' else len(self.chars) + 2

  def encode(self, text: str) -> np.ndarray:
    if self.kind == 'byte':
      return np.frombuffer(text.encode('utf-8'), np.uint8).astype(np.int32) + 1
    table = {c: i + 1 for i, c in enumerate(self.chars)}
    unk = len(self.chars) + 1
    return np.array([table.get(c, unk) for c in text], np.int32)

  def decode(self, ids) -> str:
    """Token ids back to text; padding (0) and unknown ids are dropped, invalid UTF-8
    replaced."""
    ids = [int(i) for i in np.asarray(ids).reshape(-1)]
    if self.kind == 'byte':
      return bytes(i - 1 for i in ids if 1 <= i <= 256).decode('utf-8', errors='replace')
    return ''.join(self.chars[i - 1] for i in ids if 1 <= i <= len(self.chars))


def make_tokenizer(kind: str, train_texts) -> Tokenizer:
  if kind not in TOKENIZERS:
    raise ValueError(f'task.tokenizer={kind!r}; allowed: {", ".join(TOKENIZERS)}')
  if kind == 'byte':
    return Tokenizer('byte')
  return Tokenizer('char', ''.join(sorted(set().union(*(set(t) for t in train_texts)))))


def unigram_entropy(tokens: np.ndarray, vocab_size: int) -> float:
  """H = -sum_v p_v ln p_v (nats) of the token frequencies: the loss of the best
  context-free predictor, the chance level of a language model."""
  p = np.bincount(tokens, minlength=vocab_size).astype(np.float64)
  p = p[p > 0] / p.sum()
  return float(-(p * np.log(p)).sum())


# ------------------------------------------------------------------------ (seed, step)
def example_indices(seed: int, split: int, step: int, batch_size: int, n_items: int,
                    process_index: int = 0, process_count: int = 1) -> np.ndarray:
  """Item indices of this host's rows of the global batch at `step`.

  Global example i = step * B + b reads item perm_e[i mod N], e = i // N, with perm_e a
  permutation seeded by (seed, split, e): each epoch visits every item once. Host p of P
  takes rows b in [p B/P, (p+1) B/P), matching sharding.process_slice, so hosts never
  overlap and their union is the global batch.
  """
  if batch_size % process_count:
    raise ValueError(f'batch_size={batch_size} is not divisible by {process_count} processes')
  per_host = batch_size // process_count
  i = step * batch_size + process_index * per_host + np.arange(per_host, dtype=np.int64)
  epochs, pos = i // n_items, i % n_items
  out = np.empty(per_host, np.int64)
  for e in np.unique(epochs):
    perm = np.random.default_rng([seed, split, int(e)]).permutation(n_items)
    out[epochs == e] = perm[pos[epochs == e]]
  return out


@dataclasses.dataclass(frozen=True)
class LMStream:
  """One split's token stream; window j is tokens[j T : j T + T + 1] (inputs + shifted
  targets), non-overlapping so an epoch sees each token once."""
  tokens: np.ndarray            # [N_tokens] int32

  def num_windows(self, seq_len: int) -> int:
    return (len(self.tokens) - 1) // seq_len

  def batch(self, seed, split, step, batch_size, seq_len, process_index=0, process_count=1):
    n = self.num_windows(seq_len)
    if n < 1:
      raise ValueError(f'the text has {len(self.tokens)} tokens, fewer than one window of '
                       f'seq_len+1={seq_len + 1}; use a shorter seq_len or more text')
    starts = example_indices(seed, split, step, batch_size, n, process_index,
                             process_count) * seq_len
    w_BxT1 = self.tokens[starts[:, None] + np.arange(seq_len + 1)]
    return {'inputs': w_BxT1[:, :-1], 'targets': w_BxT1[:, 1:],
            'mask': np.ones((len(starts), seq_len), np.float32)}


@dataclasses.dataclass(frozen=True)
class ClassificationRows:
  """Map-style rows: token arrays and labels, read by index."""
  tokens: tuple                 # per row: [n_i] int32
  labels: np.ndarray            # [N] int32

  def batch(self, seed, split, step, batch_size, seq_len, process_index=0, process_count=1):
    idx = example_indices(seed, split, step, batch_size, len(self.labels), process_index,
                          process_count)
    return {'inputs': pad_left([self.tokens[i] for i in idx], seq_len),
            'targets': self.labels[idx]}


def pad_left(rows, seq_len: int) -> np.ndarray:
  """Truncate to the first seq_len tokens and pad with PAD at the START, so a recurrent
  model's h_T sits on the last real token (the padding is read before any text, from
  h_0). Returns tokens [B, T] int32."""
  x_BxT = np.full((len(rows), seq_len), PAD, np.int32)
  for b, r in enumerate(rows):
    r = r[:seq_len]
    if len(r):
      x_BxT[b, seq_len - len(r):] = r
  return x_BxT


def majority_fraction(labels: np.ndarray) -> float:
  return float(np.bincount(labels).max() / len(labels)) if len(labels) else math.nan
