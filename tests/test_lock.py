"""requirements.lock (uv pip compile --generate-hashes) pins the exact environment:
every package of requirements.txt at the same version, each pin with its hashes."""
import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pins(text):
  """name (normalised) -> (version, hashes) of each `name==version` requirement."""
  out = {}
  for m in re.finditer(r'^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)((?:\s*\\\n\s+--hash=\S+)*)',
                       text, re.M):
    out[re.sub(r'[-_.]+', '-', m.group(1).lower())] = (m.group(2), m.group(3).count('--hash='))
  return out


def test_lock_pins_requirements_with_hashes():
  with open(os.path.join(ROOT, 'requirements.txt')) as f:
    wanted = _pins(f.read())
  with open(os.path.join(ROOT, 'requirements.lock')) as f:
    lock = f.read()
  locked = _pins(lock)
  assert wanted, 'requirements.txt pins nothing'
  for name, (version, _) in wanted.items():
    assert name in locked, f'{name} is in requirements.txt but not in requirements.lock'
    assert locked[name][0] == version, (
        f'{name}: requirements.txt pins {version}, requirements.lock {locked[name][0]}; '
        f'regenerate the lock (the command at its top)')
  unhashed = [n for n, (_, hashes) in locked.items() if not hashes]
  assert not unhashed, f'pins without --hash in requirements.lock: {unhashed}'
  assert 'uv pip compile requirements.txt --generate-hashes' in lock


def test_pins_parser_sees_a_drift():
  assert _pins('a-b==1.0 \\\n    --hash=sha256:00\n') == {'a-b': ('1.0', 1)}
  assert _pins('a_b==2.0\n')['a-b'] == ('2.0', 0)
