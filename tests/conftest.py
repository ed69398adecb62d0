"""8 virtual CPU devices, set before jax is imported, so sharding code is tested
without hardware. Tests that do not ask for a mesh use 1 device. Also a local Cloud
Storage emulator for the gs:// workdir tests (the gcs_bucket fixture)."""
import os
import socket
import subprocess
import sys
import tempfile
import time

import pytest

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('JAX_PLATFORMS', 'cpu')
# One persistent compilation cache for this test session, new and empty each session:
# the many tests that launch the same tiny configs (kill and resume, bad flags, reruns)
# compile each program once. The programs are the same either way (a cache hit is the
# executable a compile gives); only the time differs. A test run's own processes
# inherit it through the environment.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', tempfile.mkdtemp(prefix='seqlab-test-jax-'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

# gcsfs asks real Cloud Storage for a bucket's type over gRPC (60 s timeouts against
# the local emulator below); read when gcsfs is imported, so set before any test runs.
os.environ.setdefault('GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT', 'false')
BUCKET = 'seqlab-test'


@pytest.fixture(scope='session')
def gcs_bucket():
  """A local Cloud Storage emulator (tests/gcs_emulator.py, in memory) with one bucket;
  gcsfs (seqlab's files) and tensorstore (orbax's arrays) both talk to it. Yields
  (the gs:// URL of the bucket, the environment a subprocess needs to reach it)."""
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  server = subprocess.Popen(
      [sys.executable, os.path.join(os.path.dirname(__file__), 'gcs_emulator.py'), str(port),
       BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  url = f'http://localhost:{port}'
  env = {'STORAGE_EMULATOR_HOST': url,           # gcsfs (and google-cloud-storage)
         'TENSORSTORE_GCS_HTTP_URL': url,        # tensorstore's gcs driver (orbax)
         'GOOGLE_AUTH_TOKEN_FOR_TESTING': 'x',   # tensorstore: no metadata-server lookup
         'GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT': 'false'}
  deadline = time.time() + 30
  while True:
    try:
      socket.create_connection(('localhost', port), timeout=1).close()
      break
    except OSError:
      if time.time() > deadline or server.poll() is not None:
        server.kill()
        raise RuntimeError('the Cloud Storage emulator did not start')
      time.sleep(0.1)
  old = {k: os.environ.get(k) for k in env}
  os.environ.update(env)
  yield f'gs://{BUCKET}', env
  for k, v in old.items():
    if v is None:
      os.environ.pop(k, None)
    else:
      os.environ[k] = v
  server.kill()
  server.wait()
