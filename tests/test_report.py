"""The report: every study's section redrawn from results files only, one
self-contained HTML page, and the wall times kept across redraws."""
import base64

import ml_collections
import pytest

from seqlab import report, sweep
from seqlab.infra import writer
from seqlab.studies import long_range
from tests.test_long_range import fake_sweep


def test_report_redraws_from_results_only_and_embeds_figures(tmp_path):
  rows = fake_sweep(str(tmp_path / 'long_range'))
  for r in rows:   # the same points at T=100, where the adding claim speaks
    writer.append_jsonl_atomic(str(tmp_path / 'long_range' / 'results.jsonl'),
                               dict(r, seq_len=100, point=r['point'].replace('T50', 'T100')))
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=True, sections=['long_range']))
  out = report.run(c, str(tmp_path))
  md = open(out['report_md']).read()
  assert 'Adding problem at T >= 100: LSTM and GRU solve it while a vanilla RNN' in md
  assert '**Verdict: partly supported**' in md        # no gru at 100: that part fails
  assert '| gru solves adding at T=100 | - | - | **fails**: not run |' in md
  assert '| part | estimate [95% CI] | holds when | outcome |' in md
  assert 'jax' in md and 'python launch.py --config=experiments/report.py:quick' in md
  html = open(out['report_html']).read()
  png = open(tmp_path / 'long_range' / 'figures' / 'long_range.png', 'rb').read()
  assert base64.b64encode(png).decode() in html  # self-contained
  assert '<table>' in html and '<h2>Long-range capability</h2>' in html


def test_report_keeps_a_study_time_when_nothing_was_left_to_run(tmp_path, monkeypatch):
  def study_adding_a_row(config, workdir):
    fake_sweep(workdir)
  monkeypatch.setattr(long_range, 'run', study_adding_a_row)
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=False, sections=['long_range']))
  report.run(c, str(tmp_path))
  first = writer.read_json(str(tmp_path / 'timings.json'))['long_range']
  monkeypatch.setattr(long_range, 'run', lambda config, workdir: None)
  report.run(c, str(tmp_path))   # every point done: the study adds no row
  assert writer.read_json(str(tmp_path / 'timings.json'))['long_range'] == first


def test_quick_runs_every_study_but_paper_and_draws_paper_when_its_results_are_there(tmp_path):
  from seqlab import config as seqlab_config
  from seqlab.studies import paper
  c = seqlab_config.load('report:quick')
  assert [s.NAME for s in report._sections(c)] == [n for n in report.studies.STUDIES
                                                   if n != 'paper']
  assert report._variant(c, 'paper') == 'cpu'
  writer.append_jsonl_atomic(str(tmp_path / 'paper' / 'results.jsonl'), dict(
      point='listops-transformer-T128-s0', group='listops', model='transformer', seed=0,
      task='listops', seq_len=128, steps=10, lr=1e-3, final_loss=1.5, final_accuracy=0.4,
      final_accuracy_se=0.01, majority_accuracy=0.17, chance_loss=2.0))
  with c.unlocked():
    c.redraw_only, c.sections = True, ['long_range']
  fake_sweep(str(tmp_path / 'long_range'))
  md = open(report.run(c, str(tmp_path))['report_md']).read()
  assert f'## {paper.TITLE}' in md and 'the transformer beats the majority class' in md
  assert 'smoke test' in md


def test_redraw_with_nothing_run_is_a_config_error_and_writes_nothing(tmp_path):
  c = ml_collections.ConfigDict(dict(scale='quick', redraw_only=True, sections=[]))
  with pytest.raises(sweep.ConfigError, match='nothing to report'):
    report.run(c, str(tmp_path))
  assert not (tmp_path / 'report.md').exists() and not (tmp_path / 'report.html').exists()


def test_a_pipe_in_a_claim_stays_in_its_table_cell(tmp_path):
  """Norms such as ||dL/dx_1|| in a claim must not split the claims table's cells."""
  md = "| a | b |\n|---|---|\n| x \\|\\|dL\\|\\| | y |\n"
  html = report.to_html(md, str(tmp_path))
  assert '<td>x ||dL|| </td>' in html.replace('\n', '') or '<td>x ||dL||</td>' in html


def test_the_device_report_checks_kernels_first_then_every_quick_study():
  from seqlab import config as seqlab_config
  c = seqlab_config.load('report:gpu')
  report.validate(c)   # every study's config for this scale passes its own checks
  order = [s.NAME for s in report._sections(c)]
  # every study but paper (hours at the papers' scale: run on its own)
  assert order[0] == 'throughput' and sorted(order) == sorted(set(report.studies.STUDIES) -
                                                             {'paper'})
  assert report._variant(c, 'throughput') == 'gpu'
  assert {report._variant(c, n) for n in order[1:]} == {'quick'}
  assert seqlab_config.load('throughput:gpu').bench.check_backends
