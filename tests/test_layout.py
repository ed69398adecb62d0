"""The shape of the house: no import loop between seqlab's modules (direct or through a
registry), no sys.path edits, modules short enough to read in one sitting, every study
with the one interface and a config, every model family with its kernels."""
import ast
import importlib
import os

import pytest

from seqlab import config as seqlab_config
from seqlab import models, studies

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STUDY_INTERFACE = ('NAME', 'TITLE', 'CAPTIONS', 'validate', 'run', 'rows', 'draw', 'table',
                   'claims')


def _modules() -> dict[str, str]:
  """dotted module name -> path, for every .py file under seqlab/."""
  out = {}
  for folder, _, files in os.walk(os.path.join(ROOT, 'seqlab')):
    for f in files:
      if f.endswith('.py'):
        path = os.path.join(folder, f)
        rel = os.path.relpath(path, ROOT)[:-3].replace(os.sep, '.')
        out[rel[:-len('.__init__')] if rel.endswith('.__init__') else rel] = path
  return out


def _imports_at_module_level(path: str, name: str, known: set[str]) -> set[str]:
  """The seqlab modules `path` imports when it is imported (top-level statements only;
  imports inside functions run later and cannot form an import-time loop)."""
  tree = ast.parse(open(path).read())
  package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
  out = set()
  for node in tree.body:
    if isinstance(node, ast.Import):
      out |= {a.name for a in node.names if a.name in known}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        base = '.'.join(package.split('.')[:len(package.split('.')) - node.level + 1] +
                        ([node.module] if node.module else []))
      for a in node.names:
        full = f'{base}.{a.name}'
        out.add(full if full in known else base)
  return {m for m in out if m in known and m != name}


def test_no_import_loop_between_modules():
  mods = _modules()
  graph = {m: _imports_at_module_level(p, m, set(mods)) for m, p in mods.items()}
  # a package imports its submodules only through its __init__: that edge is not a loop
  state = {}

  def visit(m, stack):
    state[m] = 'open'
    for d in graph[m]:
      if d.startswith(m + '.'):
        continue
      if state.get(d) == 'open' and not m.startswith(d + '.'):
        pytest.fail(f'import loop: {" -> ".join(stack + [m, d])}')
      if d not in state:
        visit(d, stack + [m])
    state[m] = 'done'

  for m in sorted(graph):
    if m not in state:
      visit(m, [])


@pytest.mark.parametrize('name', sorted(_modules()))
def test_every_module_imports_on_its_own(name):
  importlib.import_module(name)


def test_no_sys_path_edits_and_short_modules():
  for folder in ('seqlab', 'experiments', 'tests'):
    for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
      for f in files:
        if not f.endswith('.py') or f == os.path.basename(__file__):
          continue
        text = open(os.path.join(dirpath, f)).read()
        assert 'sys.path' not in text, f'{f} edits sys.path; pyproject.toml puts the root on it'
        if folder == 'seqlab':
          assert text.count('\n') <= 450, f'{f} has {text.count(chr(10))} lines (house: ~400)'
  assert 'sys.path' not in open(os.path.join(ROOT, 'launch.py')).read()


@pytest.mark.parametrize('name', sorted(studies.STUDIES))
def test_every_study_has_the_interface_and_a_config(name):
  study = studies.STUDIES[name]
  for attr in STUDY_INTERFACE:
    assert hasattr(study, attr), f'seqlab.studies.{name} lacks {attr}'
  assert study.NAME == name
  assert seqlab_config.load(name).study == name
  assert seqlab_config.load(f'{name}:quick').study == name   # the report runs :quick
  assert study.claims([]) == [] and isinstance(study.table([]), str)


def test_every_model_family_has_its_kernels_reference_first():
  assert set(models.KERNELS) == set(models.MODELS)
  for name, kernels in models.KERNELS.items():
    assert models.resolve_kernel(name, 'auto', platform='cpu') == kernels[0]
    for dtype in models.DTYPES:   # what auto picks elsewhere is one of the family's kernels
      for platform in ('gpu', 'tpu'):
        assert models.resolve_kernel(name, 'auto', dtype, platform) in kernels
    with pytest.raises(ValueError, match=f'not a kernel of {name}'):
      models.resolve_kernel(name, 'no-such-kernel')


def test_a_moved_config_or_key_names_its_replacement():
  with pytest.raises(seqlab_config.ConfigFileError, match='throughput.py:scan'):
    seqlab_config.load('experiments/scan_speed.py')
  c = seqlab_config.load('long_range')
  with pytest.raises(seqlab_config.ConfigFileError, match='replaced by model.kernel'):
    seqlab_config.check_override(c, 'model.recurrent_impl', '--config.model.recurrent_impl=fused')
