"""File helpers without TensorFlow: checksums, atomic writes and the cache folder.

`zoo.artifacts` (run directories) and `zoo.pretrained` (bundled models, which apps load with
numpy and onnxruntime alone) share them, so both check and write files the same way.
"""

import contextlib
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


def write_json_atomic(path, data):
    """Writes `data` as JSON to `path` with `atomic_write`, synced to disk before the rename."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())

    atomic_write(path, write)
