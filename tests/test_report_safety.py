"""A report is shared: nothing in its text (model names, claims, notes from results
rows and configs) runs as HTML in report.html, and only figures inside the workdir are
embedded."""
import base64
import os
import re

from seqlab import report

PNG = b'\x89PNG\r\n\x1a\n' + bytes(range(64))   # bytes enough: nothing decodes them


def test_html_from_a_results_row_is_text_not_markup(tmp_path):
  row_model = '<script>alert(1)</script>'
  md = (f'| model | note |\n|---|---|\n| {report._cell(row_model)} | '
        f'{report._cell("<img src=x onerror=alert(2)> a|b")} |\n\n'
        f'<iframe src="https://example.org"></iframe>\n\n'
        f'[run me](javascript:alert(3)) <b onclick="alert(4)">bold</b>\n\n'
        f'```bash\npython launch.py --models=\'<x>\'\n```\n')
  html = report.to_html(md, str(tmp_path))
  body = html.split('<body>', 1)[1]
  for markup in ('<script', '<iframe', '<img src=x', 'javascript:', '<b '):
    assert markup not in body, markup
  assert not re.search(r'<[^>]*\son\w+\s*=', body)          # no handler in any tag
  assert '&lt;script&gt;alert(1)&lt;/script&gt;' in body     # shown, as text
  assert '<td>&lt;img src=x onerror=alert(2)&gt; a|b</td>' in body   # the pipe kept in its cell
  assert '--models=\'&lt;x&gt;\'' in body                   # code keeps its text too


def test_a_newline_in_a_cell_does_not_end_the_row():
  assert report._cell('two\nlines') == 'two lines'


def test_only_images_inside_the_workdir_are_embedded(tmp_path):
  w = tmp_path / 'w'
  (w / 'long_range' / 'figures').mkdir(parents=True)
  (w / 'long_range' / 'figures' / 'ok.png').write_bytes(PNG)
  secret = PNG + b'secret'
  (tmp_path / 'secret.png').write_bytes(secret)
  os.symlink(tmp_path / 'secret.png', w / 'linked.png')   # inside by name, outside for real
  md = ('![ok](long_range/figures/ok.png)\n\n![abs](' + str(tmp_path / 'secret.png') +
        ')\n\n![up](../secret.png)\n\n![link](linked.png)\n\n![sneaky](long_range/../../secret.png)\n')
  html = report.to_html(md, str(w))
  assert base64.b64encode(PNG).decode() in html                 # the study's own figure
  assert base64.b64encode(secret).decode() not in html          # no file from outside
  assert str(tmp_path / 'secret.png') not in html and '../secret.png' not in html
  assert html.count('src=""') == 4
