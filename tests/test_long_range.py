"""The long-range study's rows, table and claims, drawn from results files the test
writes itself (plots read only results files)."""
import os

from seqlab.infra import writer
from seqlab.studies import long_range


def fake_sweep(workdir):
  rows = []
  for model, losses in {'rnn': [0.16, 0.17], 'lstm': [0.001, 0.002]}.items():
    for seed, loss in enumerate(losses):
      point = f'{model}-adding-T50-s{seed}'
      row = dict(point=point, model=model, task='adding', seq_len=50, seed=seed,
                 num_params=100, steps=3, final_loss=loss, final_accuracy=None,
                 chance_loss=1 / 6, wall_s=1.0, diverged_at_step=None)
      writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), row)
      for step, train_loss in [(1, 0.2), (2, 0.05 if model == 'rnn' else 0.01), (3, loss)]:
        m = writer.MetricWriter(os.path.join(workdir, point))
        m.write(step, {'loss': train_loss, 'grad_norm': 1.0})
        m.close()
      rows.append(row)
  # a diverged point
  writer.append_jsonl_atomic(os.path.join(workdir, 'results.jsonl'), dict(
      rows[0], point='gru-adding-T50-s0', model='gru', final_loss=None, diverged_at_step=2))
  return rows


def test_rows_mark_solved_steps_to_solve_and_divergence(tmp_path):
  fake_sweep(str(tmp_path))
  rows = {r['point']: r for r in long_range.rows(str(tmp_path))}
  assert not rows['rnn-adding-T50-s0']['solved']
  assert rows['lstm-adding-T50-s0']['solved']
  assert rows['lstm-adding-T50-s0']['steps_to_solve'] == 2  # 0.01 < 0.1 * 1/6
  assert rows['gru-adding-T50-s0']['diverged'] and not rows['gru-adding-T50-s0']['solved']


def test_table_has_mean_std_and_solved_counts(tmp_path):
  fake_sweep(str(tmp_path))
  table = long_range.table(long_range.rows(str(tmp_path)))
  assert '| adding | 50 | 0.167 |' in table
  assert '0.165 ± 0.005 (0/2 solved)' in table
  assert '0.0015 ± 0.0005 (2/2 solved in ~2 steps)' in table
  assert '1 diverged' in table
