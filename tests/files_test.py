"""Safe outputs: a read-only folder is refused before any work, a failed write leaves neither a
partial file nor its temporary behind."""

import os
from pathlib import Path
import subprocess
import sys

import pytest

from navai_jax.core import files


ROOT = Path(__file__).resolve().parent.parent


def test_a_folder_that_refuses_files_is_named(tmp_path, monkeypatch):
  """A read-only folder, as the kernel reports it (EACCES) to a user who is not root."""
  def refuse(self, data):
    raise PermissionError(13, 'Permission denied', str(self))

  monkeypatch.setattr(type(tmp_path), 'write_bytes', refuse)
  with pytest.raises(ValueError, match=f'Cannot write to {tmp_path}/out: Permission denied.'):
    files.check_writable(tmp_path / 'out')


def test_check_writable_creates_the_folder_and_leaves_nothing(tmp_path):
  assert files.check_writable(tmp_path / 'a' / 'b') == tmp_path / 'a' / 'b'
  assert list((tmp_path / 'a' / 'b').iterdir()) == []
  (tmp_path / 'file').write_text('x')
  with pytest.raises(ValueError, match='Cannot write to .*file/sub'):
    files.check_writable(tmp_path / 'file' / 'sub')


def test_a_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
  path = tmp_path / 'result.json'
  files.write_text(path, 'old')

  def fails(tmp):
    tmp.write_text('half')
    raise OSError(28, 'No space left on device')

  with pytest.raises(OSError, match='No space left'):
    files.write_atomically(path, fails)
  assert path.read_text() == 'old' and sorted(os.listdir(tmp_path)) == ['result.json']
  files.write_text(path, 'new')
  assert path.read_text() == 'new' and sorted(os.listdir(tmp_path)) == ['result.json']


def test_a_locked_folder_refuses_a_second_holder_until_the_first_one_ends(tmp_path):
  with files.locked(tmp_path / 'run', 'the first run'):
    with pytest.raises(files.FolderInUse, match=r'run is in use by the first run \(pid \d+'):
      with files.locked(tmp_path / 'run', 'the second run'):
        pass
  with files.locked(tmp_path / 'run', 'the second run'):  # free again
    pass
  # A holder that is killed frees the folder (the operating system drops its lock).
  holder = subprocess.Popen([sys.executable, '-c', (
      'import sys, time; from navai_jax.core import files\n'
      f'with files.locked({str(tmp_path / "run")!r}, "a killed run"):\n'
      '  print("held", flush=True); time.sleep(60)')], stdout=subprocess.PIPE, text=True,
      env={**os.environ, 'PYTHONPATH': str(ROOT)})
  assert holder.stdout.readline() == 'held\n'
  with pytest.raises(files.FolderInUse, match='a killed run'):
    with files.locked(tmp_path / 'run', 'the third run'):
      pass
  holder.kill()
  holder.wait()
  with files.locked(tmp_path / 'run', 'the third run'):
    pass
