"""The long-range table/figure and the report, drawn from results files the test
writes itself (plots read only results files)."""
import base64
import os

import ml_collections

from seqlab import plots_long_range, report, sweep, writer


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


def test_annotate_solved_steps_to_solve_and_divergence(tmp_path):
  fake_sweep(str(tmp_path))
  rows = {r['point']: r for r in plots_long_range.annotate(str(tmp_path))}
  assert not rows['rnn-adding-T50-s0']['solved']
  assert rows['lstm-adding-T50-s0']['solved']
  assert rows['lstm-adding-T50-s0']['steps_to_solve'] == 2  # 0.01 < 0.1 * 1/6
  assert rows['gru-adding-T50-s0']['diverged'] and not rows['gru-adding-T50-s0']['solved']


def test_table_has_mean_std_and_solved_counts(tmp_path):
  fake_sweep(str(tmp_path))
  table = plots_long_range.table_markdown(plots_long_range.annotate(str(tmp_path)))
  assert '| adding | 50 | 0.167 |' in table
  assert '0.165 ± 0.005 (0/2 solved)' in table
  assert '0.0015 ± 0.0005 (2/2 solved in ~2 steps)' in table
  assert '1 diverged' in table


def test_report_redraws_from_results_only_and_embeds_figures(tmp_path):
  fake_sweep(str(tmp_path / 'long_range'))
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=True, sections=['long_range']))
  out = report.run(c, str(tmp_path))
  md = open(out['report_md']).read()
  assert 'Adding problem: a vanilla RNN stays near the 1/6 chance level' in md
  assert 'partly supported' in md  # only lstm solves; gru diverged, no transformer
  assert 'jax' in md and 'python launch.py --config=experiments/report.py:quick' in md
  html = open(out['report_html']).read()
  png = open(tmp_path / 'long_range' / 'figures' / 'long_range.png', 'rb').read()
  assert base64.b64encode(png).decode() in html  # self-contained
  assert '<table>' in html and '<h2>Long-range capability</h2>' in html


def test_report_keeps_a_study_time_when_nothing_was_left_to_run(tmp_path, monkeypatch):
  def study_adding_a_row(config, workdir):
    fake_sweep(workdir)
  monkeypatch.setattr(sweep, 'study_fn', lambda name: study_adding_a_row)
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=False, sections=['long_range']))
  report.run(c, str(tmp_path))
  first = writer.read_json(str(tmp_path / 'timings.json'))['long_range']
  monkeypatch.setattr(sweep, 'study_fn', lambda name: lambda config, workdir: None)
  report.run(c, str(tmp_path))   # every point done: the study adds no row
  assert writer.read_json(str(tmp_path / 'timings.json'))['long_range'] == first
