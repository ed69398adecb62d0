"""A local Cloud Storage server for the tests: gcp-storage-emulator, in memory, with
the one header it lacks and tensorstore (orbax's array store) needs, and (on disk, as
tests/test_failures.py runs it) writes that are whole or absent.

  python tests/gcs_emulator.py PORT BUCKET

Real Cloud Storage sends an object's generation as `x-goog-generation` on every media
download; tensorstore reads it to version what it caches. The emulator does not send
it, and tensorstore then fails a checkpoint write ("Malformed StorageGeneration")
at times, apparently when it re-reads an OCDBT manifest it has written (8 of 60 saves in a
stress run of 20 managers x 3 saves; 0 of 60 with this header).
"""
import os
import sys
import threading
import time

from gcp_storage_emulator import storage
from gcp_storage_emulator.handlers import objects

_download = objects.download


def download(request, response, storage, *args, **kwargs):
  _download(request, response, storage, *args, **kwargs)
  try:
    obj = storage.get_file_obj(request.params['bucket_name'], request.params['object_id'])
  except Exception:  # not found: the wrapped handler already answered 404
    return
  response['x-goog-generation'] = obj['generation']
  response['x-goog-metageneration'] = obj['metageneration']


objects.download = download  # before server.py builds its route table from it

_write_bytes = storage._FileStore.write_bytes


def write_bytes(self, rel, content):
  """On disk, a write is whole or absent, as a real bucket's objects are. The emulator
  writes in place, so one killed mid-write leaves a cut `.meta` (its index of every
  object) and then fails to start again (tests/test_failures.py kills it)."""
  if self._use_memory:
    return _write_bytes(self, rel, content)
  path = self._disk_path(rel)
  path.parent.mkdir(parents=True, exist_ok=True)
  tmp = self._root / f'.write.{os.getpid()}.{threading.get_ident()}'   # beside no object
  tmp.write_bytes(content)
  os.replace(tmp, path)


storage._FileStore.write_bytes = write_bytes

from gcp_storage_emulator import server  # noqa: E402


def main(port: int, bucket: str) -> None:
  s = server.create_server('localhost', port, in_memory=True, default_bucket=bucket)
  s.start()
  while True:
    time.sleep(3600)


if __name__ == '__main__':
  main(int(sys.argv[1]), sys.argv[2])
