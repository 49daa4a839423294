"""File helpers without TensorFlow: checksums, atomic writes and the cache folder.

`zoo.artifacts` (run directories) and `zoo.pretrained` (bundled models, which apps load with
numpy and onnxruntime alone) share them, so both check and write files the same way.

Writers never leave half a file under its final name: a file or folder is written under a hidden
temporary name (`.tmp*`, `.NAME.*`) and renamed into place; `remove_leftovers` deletes what a
killed writer left behind. Whole folders are replaced with `exchange`, one atomic rename.
"""

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import os
import shutil
import tempfile

CACHE_ENV = "VAE_ZOO_CACHE"


def cache_dir():
    """Where the zoo caches what it makes or fetches (classifiers, downloaded models):
    `$VAE_ZOO_CACHE`, else `~/.cache/vae-zoo`."""
    return os.environ.get(CACHE_ENV) or os.path.join(os.path.expanduser("~"), ".cache", "vae-zoo")


def sha256(path):
    """The hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def atomic_write(path, write):
    """Calls `write(tmp)` on a hidden temporary file beside `path` whose name ends like `path`'s (as
    Keras and numpy want: `.keras`, `.weights.h5`, `.npz`), then renames it into place: readers see
    the old file or the new one, never half of one, and a failed write leaves nothing behind."""
    folder, name = os.path.split(path)
    fd, tmp = tempfile.mkstemp(dir=folder or ".", prefix=".tmp", suffix=f"-{name}")
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; artifacts are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_folder(path):
    """Yields a hidden temporary folder beside `path` to fill; on success it replaces `path`, on an
    error it is deleted: a folder is never seen half-written under its final name."""
    folder, name = os.path.split(os.path.normpath(path))
    staging = tempfile.mkdtemp(dir=folder or ".", prefix=f".{name}.")
    try:
        os.chmod(staging, 0o755)
        yield staging
        shutil.rmtree(path, ignore_errors=True)
        os.replace(staging, path)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def write_json(path, data):
    """Writes `data` as JSON to `path`, synced to disk."""
    with open(path, "w") as f:
        json.dump(data, f, indent=2, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())


def write_json_atomic(path, data):
    """Writes `data` as JSON to `path` with `atomic_write`, synced to disk before the rename."""
    atomic_write(path, lambda tmp: write_json(tmp, data))


class Locked(RuntimeError):
    """Another process holds the lock; `pid` is its process id (None when unknown)."""

    def __init__(self, path, pid):
        super().__init__(f"{path} is locked by process {pid if pid else 'unknown'}")
        self.path, self.pid = path, pid


@contextlib.contextmanager
def exclusive_lock(path):
    """Holds an exclusive `flock` on `path` (created if missing, holding the holder's PID) for the
    block; raises `Locked` at once when another process holds it. The kernel releases the lock
    when its process exits, however it exits, so a killed holder never leaves a stale lock."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            raise Locked(path, int(text) if text.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock; the file stays (unlinking a lock file races with the next taker)


def exchange(a, b):
    """Swaps the paths `a` and `b` (two folders on one file system) in one atomic step, with Linux's
    renameat2(RENAME_EXCHANGE): every reader sees one of them whole under each name, even if the
    process dies. Where the kernel or file system lacks it, falls back to three renames, which
    leave `b` briefly missing (its new content is then under `.B.swap` beside it, where
    `zoo.artifacts.locked` finds it)."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is not None:
        at_fdcwd, rename_exchange = -100, 2
        if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), a)
    parent, name = os.path.split(os.path.normpath(b))
    swap = os.path.join(parent, f".{name}.swap")
    os.replace(a, swap)
    os.replace(b, a)
    os.replace(swap, b)


def remove_leftovers(folder):
    """Deletes what killed atomic writers left in `folder`: hidden `.tmp*` files and hidden staging
    folders (names starting with '.'). Call it only while no writer is at work there."""
    if not os.path.isdir(folder):
        return
    for name in os.listdir(folder):
        path = os.path.join(folder, name)
        if name.startswith("."):
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                os.remove(path)
