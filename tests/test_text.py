"""Loading text through `datasets` from files the tests write; (seed, step) batches; sharding."""

import numpy as np
import pytest

from seqlab.data import text as text_data


@pytest.fixture
def files(tmp_path):
  import datasets
  (tmp_path / 'a.txt').write_text('hello world\nsecond line\n')
  (tmp_path / 'b.txt').write_text('héllo again\n')
  (tmp_path / 'd.csv').write_text('review,sentiment\ngood film,pos\nbad film,neg\nok,pos\n')
  datasets.Dataset.from_dict({'text': ['x' * 5, 'yy', 'zzz'], 'label': [0, 1, 0]}).to_parquet(
      str(tmp_path / 'd.parquet'))
  return tmp_path


def test_txt_glob_is_one_row_per_file_with_newlines(files):
  ds = text_data.load_local(str(files / '*.txt'))
  assert sorted(ds['text']) == ['hello world\nsecond line\n', 'héllo again\n']


def test_csv_and_parquet_columns(files):
  ds = text_data.load_local(str(files / 'd.csv'))
  assert ds.column_names == ['review', 'sentiment'] and ds['sentiment'] == ['pos', 'neg', 'pos']
  ds = text_data.load_local(str(files / 'd.parquet'))
  assert ds['text'] == ['xxxxx', 'yy', 'zzz'] and ds['label'] == [0, 1, 0]
  with pytest.raises(ValueError, match="task.text_column='body'.*available: review, sentiment"):
    text_data.check_column(text_data.load_local(str(files / 'd.csv')), 'body', 'task.text_column')


def test_missing_file_and_offline_hub_are_one_line_errors(files, monkeypatch):
  with pytest.raises(OSError, match='no file matches'):
    text_data.load_local(str(files / 'nope*.txt'))
  monkeypatch.setenv('HF_DATASETS_OFFLINE', '1')
  with pytest.raises(OSError, match="'stanfordnlp/imdb' needs the network") as e:
    text_data.load_hub('stanfordnlp/imdb', None, 'train')
  assert '\n' not in str(e.value)


def test_a_hub_dataset_loads_at_the_configured_revision(files, monkeypatch):
  """task.revision reaches datasets.load_dataset, for the text and the image tasks (the
  Hub stood in for by a local parquet file); it is refused where no Hub id is read."""
  import datasets
  from seqlab.data import images, text_tasks
  calls = []

  def load_dataset(name, config_name=None, split=None, revision=None):
    calls.append((name, split, revision))
    return datasets.Dataset.from_parquet(str(files / 'd.parquet'))

  monkeypatch.setattr(text_data, 'hub_reachable', lambda timeout_s=0: True)
  monkeypatch.setattr(datasets, 'load_dataset', load_dataset)
  ds = text_data.load_hub('someone/data', None, 'train', 'a1b2c3d')
  assert ds['text'] == ['xxxxx', 'yy', 'zzz'] and calls[-1] == ('someone/data', 'train', 'a1b2c3d')
  text_data.load_hub('someone/data', None, 'train')
  assert calls[-1][2] is None   # '' asks for the dataset's default branch
  opts = dict(text_tasks._opts({'dataset': 'someone/data', 'revision': 'v1.0', 'split': 'train'}))
  text_tasks._train_eval_datasets(opts, need_label=False)
  assert calls[-1] == ('someone/data', 'train', 'v1.0')
  with pytest.raises(ValueError, match=r"task.revision='v1.0' pins a Hub dataset, and "
                                       r"task.dataset='stdlib' reads none"):
    text_tasks._opts({'dataset': 'stdlib', 'revision': 'v1.0'})
  with pytest.raises(ValueError, match=r"task.dataset='sklearn' reads none"):
    images._opts('digits', {'revision': 'v1.0'})
  assert images._opts('smnist', {'revision': 'v1.0'})['revision'] == 'v1.0'


def test_tokenizers_byte_and_char():
  byte = text_data.make_tokenizer('byte', ['é'])
  assert byte.vocab_size == 257 and list(byte.encode('aé')) == [98, 0xC3 + 1, 0xA9 + 1]
  char = text_data.make_tokenizer('char', ['ba', 'c'])
  assert char.chars == 'abc' and list(char.encode('cabz')) == [3, 1, 2, 4]
  with pytest.raises(ValueError, match="'bpe'; allowed: byte, char"):
    text_data.make_tokenizer('bpe', [])


def test_unigram_entropy_analytic():
  assert text_data.unigram_entropy(np.array([1, 2, 1, 2]), 3) == pytest.approx(np.log(2))
  assert text_data.unigram_entropy(np.array([5, 5]), 6) == 0.0


def test_every_item_once_per_epoch_and_seed_step_determinism():
  n, b = 10, 5  # 2 steps per epoch
  epoch0 = np.concatenate([text_data.example_indices(3, 0, s, b, n) for s in (0, 1)])
  epoch1 = np.concatenate([text_data.example_indices(3, 0, s, b, n) for s in (2, 3)])
  assert sorted(epoch0) == list(range(n)) and sorted(epoch1) == list(range(n))
  assert not (epoch0 == epoch1).all()  # a new permutation each epoch
  assert (text_data.example_indices(3, 0, 7, b, n) == text_data.example_indices(3, 0, 7, b, n)).all()
  assert not (text_data.example_indices(4, 0, 0, b, n) == epoch0[:b]).all()


def test_two_hosts_take_disjoint_rows_whose_union_is_the_global_batch():
  stream = text_data.LMStream(np.arange(1000, dtype=np.int32))
  full = stream.batch(0, 0, 5, 8, 16)
  hosts = [stream.batch(0, 0, 5, 8, 16, process_index=p, process_count=2) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h['inputs'] for h in hosts]), full['inputs'])
  starts = [set(h['inputs'][:, 0].tolist()) for h in hosts]
  assert not starts[0] & starts[1] and len(starts[0] | starts[1]) == 8


def test_lm_windows_are_seq_len_with_shifted_targets():
  stream = text_data.LMStream(np.arange(100, dtype=np.int32))
  b = stream.batch(0, 0, 0, 4, 16)
  assert b['inputs'].shape == b['targets'].shape == (4, 16)
  np.testing.assert_array_equal(b['targets'], b['inputs'] + 1)
  assert (b['inputs'][:, 0] % 16 == 0).all()  # non-overlapping windows
  with pytest.raises(ValueError, match='fewer than one window'):
    text_data.LMStream(np.arange(10, dtype=np.int32)).batch(0, 0, 0, 4, 16)


def test_classification_rows_truncate_and_left_pad():
  rows = text_data.ClassificationRows((np.array([5, 6]), np.arange(1, 9)), np.array([0, 1]))
  x = text_data.pad_left([np.array([5, 6]), np.arange(1, 9)], 4)
  np.testing.assert_array_equal(x, [[0, 0, 5, 6], [1, 2, 3, 4]])
  b = rows.batch(0, 0, 0, 2, 4)
  assert sorted(b['targets'].tolist()) == [0, 1] and b['inputs'].shape == (2, 4)
