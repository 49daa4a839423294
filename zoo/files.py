"""File helpers without TensorFlow: checksums, atomic writes and the cache folder.

`zoo.artifacts` (run directories) and `zoo.pretrained` (bundled models, which apps load with
numpy and onnxruntime alone) share them, so both check and write files the same way.
"""

import hashlib
import json
import os
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


def write_json_atomic(path, data):
    """Writes `data` as JSON to `path` through a temporary file and a rename: readers see the old
    file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".manifest.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; a manifest is for everyone to read
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise
