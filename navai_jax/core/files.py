"""Writing outputs safely: a folder is checked for writing before work starts, and every file is
written beside its place and renamed into it, so it is whole or absent, never half written."""

import contextlib
import fcntl
import os
import time
from pathlib import Path
from typing import Callable, Iterator


def check_writable(folder: str | os.PathLike) -> Path:
  """Creates `folder` if needed and proves it takes a file; ValueError naming it otherwise."""
  folder = Path(folder)
  try:
    folder.mkdir(parents=True, exist_ok=True)
    probe = folder / f'.write-test-{os.getpid()}'
    probe.write_bytes(b'x')
    probe.unlink()
  except OSError as e:
    raise ValueError(f'Cannot write to {folder}: {e.strerror or e}.') from None
  return folder


@contextlib.contextmanager
def atomic(path: str | os.PathLike) -> Iterator[Path]:
  """Yields a temporary path beside `path`; renames it to `path` once the block succeeds, and
  removes it if the block fails (a full disk, an error), so `path` is never left half written.
  """
  path = Path(path)
  tmp = path.with_name(path.name + '.tmp')
  try:
    yield tmp
    with open(tmp, 'rb+') as f:
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    tmp.unlink(missing_ok=True)
    raise


def write_atomically(path: str | os.PathLike, write: Callable[[Path], None]) -> None:
  """`write(tmp)`, then `tmp` renamed to `path` (see `atomic`)."""
  with atomic(path) as tmp:
    write(tmp)


def write_text(path: str | os.PathLike, text: str) -> None:
  """`path` holds `text` (UTF-8), written atomically."""
  write_atomically(path, lambda tmp: tmp.write_text(text, encoding='utf-8'))


class FolderInUse(ValueError):
  """Another process holds the folder's lock (`locked`)."""


LOCK_FILE = '.lock'


@contextlib.contextmanager
def locked(folder: str | os.PathLike, what: str) -> Iterator[Path]:
  """Holds `folder/.lock` (an exclusive `flock`) while the block runs: a second run into the
  same folder stops at once with one line naming the first, instead of both writing (and one
  losing its work). The operating system drops the lock when its process ends, killed or not,
  so a rerun after a crash resumes.

  Raises:
    FolderInUse: another process holds the lock.
  """
  folder = check_writable(folder)
  path = folder / LOCK_FILE
  with open(path, 'a+', encoding='utf-8') as f:
    try:
      fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      f.seek(0)
      holder = f.read().strip() or 'another process'
      raise FolderInUse(f'{folder} is in use by {holder}; wait for it to end, or use another '
                        'folder.') from None
    f.seek(0)
    f.truncate()
    f.write(f'{what} (pid {os.getpid()}, since {time.strftime("%Y-%m-%d %H:%M:%S")})\n')
    f.flush()
    try:
      yield folder
    finally:
      f.seek(0)
      f.truncate()
      fcntl.flock(f.fileno(), fcntl.LOCK_UN)
