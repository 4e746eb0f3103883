"""Safe outputs: a read-only folder is refused before any work, a failed write leaves neither a
partial file nor its temporary behind."""

import os

import pytest

from navai_jax import files


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
