"""Safe outputs: a read-only folder is refused before any work, a failed write leaves neither a
partial file nor its temporary behind."""

import os

import pytest

from navai_jax import files


@pytest.mark.skipif(os.geteuid() == 0, reason='root writes into read-only folders')
def test_a_read_only_folder_is_named(tmp_path):
  tmp_path.chmod(0o500)
  try:
    with pytest.raises(ValueError, match=f'Cannot write to {tmp_path}/out'):
      files.check_writable(tmp_path / 'out')
  finally:
    tmp_path.chmod(0o700)


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
