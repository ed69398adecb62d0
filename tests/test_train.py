"""One step for every model and task, a learning test, and 8 devices = 1 device."""
import json
import os

import jax
import numpy as np
import pytest

from experiments import long_range
from seqlab import sweep, train
from seqlab.data import tasks
from seqlab.infra import writer


def tiny_config(model='lstm', task='adding', seq_len=20, steps=2, num_devices=1, **train_kw):
  c = long_range.get_config()
  with c.unlocked():
    c.model.name, c.model.hidden = model, 16
    c.model.param_budget, c.sweep.lrs = 0, []   # the width given, train.lr
    c.task.name, c.task.seq_len = task, seq_len
    c.num_devices = num_devices
    c.train.steps, c.train.batch_size, c.train.log_every = steps, 8, 1
    c.train.eval_examples, c.train.warmup_steps = 8, 1
    c.train.update(train_kw)
  return c


@pytest.mark.parametrize('task', list(tasks.TASKS))
@pytest.mark.parametrize('model', ['rnn', 'lstm', 'gru', 'transformer'])
def test_one_training_step_every_model_and_task(model, task, tmp_path):
  r = train.train(tiny_config(model, task, seq_len=20, steps=1), str(tmp_path), verbose=False)
  assert r['steps'] == 1 and np.isfinite(r['final_loss'])
  assert (r['final_accuracy'] is None) == (tasks.TASKS[task].loss_type == 'mse')
  rows = writer.read_jsonl(str(tmp_path / 'metrics.jsonl'))
  assert {'step', 'loss', 'grad_norm', 'param_norm', 'update_norm'} <= set(rows[0])
  res = json.load(open(tmp_path / 'result.json'))
  for key in ('model', 'task', 'seq_len', 'seed', 'num_params', 'steps', 'final_loss',
              'final_accuracy', 'chance_loss', 'wall_s'):
    assert key in res
  assert json.load(open(tmp_path / 'config.json'))['task']['name'] == task


def test_lstm_learns_adding_at_T50(tmp_path):
  """Learning test: far below the 1/6 chance MSE within 300 steps."""
  c = tiny_config('lstm', 'adding', seq_len=50, steps=300, lr=3e-3, warmup_steps=20)
  with c.unlocked():
    c.model.hidden, c.train.batch_size, c.train.log_every, c.train.eval_examples = 64, 32, 100, 128
  r = train.train(c, str(tmp_path), verbose=False)
  assert r['final_loss'] < 0.1 * r['chance_loss'], r


def test_eight_devices_give_the_same_losses_as_one(tmp_path):
  assert jax.device_count() == 8
  losses = {}
  for n in (1, 8):
    train.train(tiny_config('gru', 'copy', seq_len=10, steps=5, num_devices=n),
                str(tmp_path / str(n)), verbose=False)
    losses[n] = [r['loss'] for r in writer.read_jsonl(str(tmp_path / str(n) / 'metrics.jsonl'))
                 if 'loss' in r]
  np.testing.assert_allclose(losses[1], losses[8], rtol=1e-5)


def test_sweep_writes_one_line_per_point_and_skips_finished(tmp_path, capsys):
  c = tiny_config()
  with c.unlocked():
    c.sweep.models, c.sweep.tasks, c.sweep.seq_lens, c.sweep.seeds = ['rnn', 'gru'], ['adding'], [8], [0]
  sweep.run(c, str(tmp_path))
  rows = writer.read_jsonl(str(tmp_path / 'results.jsonl'))
  assert [r['point'] for r in rows] == ['rnn-adding-T8-s0', 'gru-adding-T8-s0']
  sweep.run(c, str(tmp_path))
  assert 'already finished' in capsys.readouterr().out
  assert len(writer.read_jsonl(str(tmp_path / 'results.jsonl'))) == 2


def _scalars(event_file) -> dict:
  """{tag: {step: value}} of a TensorBoard event file, read as TensorBoard reads it:
  TFRecord frames (length, its CRC, an Event proto, its CRC) of tensorboardX's protos."""
  import struct
  from tensorboardX.proto import event_pb2
  data, out, at = open(event_file, 'rb').read(), {}, 0
  while at < len(data):
    (n,) = struct.unpack('<Q', data[at:at + 8])
    event = event_pb2.Event.FromString(data[at + 12:at + 12 + n])
    at += 12 + n + 4
    for v in event.summary.value:
      out.setdefault(v.tag, {})[event.step] = v.simple_value
  return out


def test_tensorboard_events_mirror_metrics(tmp_path):
  train.train(tiny_config(steps=2, tensorboard=True), str(tmp_path), verbose=False)
  events = [f for f in os.listdir(tmp_path / 'tb') if f.startswith('events.out.tfevents')]
  scalars = _scalars(tmp_path / 'tb' / events[0])
  rows = [r for r in writer.read_jsonl(str(tmp_path / 'metrics.jsonl')) if 'loss' in r]
  assert rows and scalars['loss'] == pytest.approx({r['step']: r['loss'] for r in rows})
