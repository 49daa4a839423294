"""The run directory: the one place that writes it and reads it back.

A finished run holds `model.keras`, `saved_model/`, `metrics.json`, `pictures/` and, written
last and atomically, `manifest.json` listing every artifact with its sha256 and size. A folder
without a manifest is not a finished run: `read_manifest` and `load_model` refuse it.

Whoever writes a run holds its lock (`locked`), a file beside it, `.NAME.lock`: a second writer
stops at once with the holder's PID. A finished run is changed only through `update_run`, which
verifies every artifact, applies the change to a copy beside the run and swaps the copy in with
one atomic rename: a reader, or a kill, sees the old run or the new one, whole.
"""

import contextlib
import json
import os
import platform
import shutil

import keras

from zoo import models  # noqa: F401  (registers every variant, so model.keras files load)
from zoo.files import (Locked, atomic_folder, atomic_write, exchange, exclusive_lock, remove_leftovers, sha256,
                       write_json, write_json_atomic)

MANIFEST = "manifest.json"
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
WORKING_DIRS = ("checkpoints", "logs")  # resumable state and TensorBoard logs: not artifacts


class RunError(ValueError):
    """A run directory is missing, unfinished or corrupt."""


def sibling(run_dir, role):
    """A hidden path beside `run_dir` that belongs to it: `.NAME.lock`, `.NAME.overwrite` (a run
    that replaces it), `.NAME.update` (the copy an update works on), `.NAME.swap`."""
    parent, name = os.path.split(os.path.abspath(run_dir))
    return os.path.join(parent, f".{name}.{role}")


def is_finished(run_dir):
    return os.path.isfile(os.path.join(run_dir, MANIFEST))


@contextlib.contextmanager
def locked(run_dir):
    """Holds the lock of `run_dir` for the block: RunError, naming the holder's PID, when another
    process writes the run. On entry it also finishes or clears what a killed writer left beside
    the run (see `files.exchange`, `update_run`)."""
    os.makedirs(os.path.dirname(os.path.abspath(run_dir)), exist_ok=True)
    try:
        with exclusive_lock(sibling(run_dir, "lock")):
            swap = sibling(run_dir, "swap")
            if os.path.isdir(swap) and not os.path.exists(run_dir):  # killed inside exchange's fallback
                os.replace(swap, run_dir)
            shutil.rmtree(swap, ignore_errors=True)
            shutil.rmtree(sibling(run_dir, "update"), ignore_errors=True)
            yield
    except Locked as err:
        raise RunError(f"{run_dir} is in use by process {err.pid or '(unknown)'}, which is writing it (a recipe, "
                       "an export or an evaluation): wait for it to finish, or stop it, then try again.") from None


def begin_run(out):
    """Makes `out` ready for a (re)run: creates it and deletes what a killed writer left there."""
    if is_finished(out):
        raise RunError(f"{out} holds a finished run; it is never trained over (see `zoo.training.run`'s --overwrite).")
    os.makedirs(out, exist_ok=True)
    remove_leftovers(out)


def save_model(model, out):
    """Writes `model.keras` and `saved_model/` (with the model's serving signatures) into `out`.

    Each is written under a temporary name and renamed into place, so a crash leaves no
    half-written file under the final name.
    """
    atomic_write(os.path.join(out, MODEL_FILE), model.save)
    archive = keras.export.ExportArchive()
    archive.track(model)
    for name, (fn, signature) in model.serving_endpoints().items():
        archive.add_endpoint(name, fn, input_signature=signature)
    with atomic_folder(os.path.join(out, SAVED_MODEL_DIR)) as staging:
        archive.write_out(staging, verbose=False)


def write_manifest(out, *, before_commit=None, **fields):
    """Writes `manifest.json` last and atomically: `fields` (variant, config, dataset, metrics, ...)
    plus library versions and every artifact file with its sha256 and size.

    `before_commit()` runs once the manifest is written to its temporary file and before the rename
    that commits it: what it removes (the checkpoints) is gone only when writing the manifest can
    no longer fail for want of space.
    """
    manifest = {**fields, "versions": library_versions(), "artifacts": _inventory(out)}

    def write(tmp):
        write_json(tmp, manifest)
        if before_commit is not None:
            before_commit()

    atomic_write(os.path.join(out, MANIFEST), write)
    return manifest


@contextlib.contextmanager
def update_run(run_dir):
    """Changes a finished run, all or nothing: `with update_run(run) as (copy, manifest):` write
    new files into the folder `copy` and edit the dict `manifest`; when the block ends, the
    manifest is rewritten with the artifacts of `copy` and `copy` replaces the run in one atomic
    rename. An error, or a kill, inside the block leaves the run as it was.

    The run is locked for the block and every artifact is verified first, so a changed or deleted
    file is reported (RunError naming it), never blessed with a new checksum. The copy hard-links
    the run's files (writers here replace files by renaming, never in place), so it is cheap.
    """
    with locked(run_dir):
        manifest = verify_run(run_dir)
        copy = sibling(run_dir, "update")
        shutil.copytree(run_dir, copy, copy_function=os.link)
        try:
            yield copy, manifest
            manifest["artifacts"] = _inventory(copy)
            write_json_atomic(os.path.join(copy, MANIFEST), manifest)
            exchange(copy, run_dir)
        finally:
            shutil.rmtree(copy, ignore_errors=True)


def replace_run(new, run_dir):
    """Puts the finished run `new` in the place of `run_dir` in one atomic rename, then deletes the
    old run; call it holding `run_dir`'s lock."""
    read_manifest(new)
    exchange(new, run_dir)
    shutil.rmtree(new)


def merge(manifest, **sections):
    """Merges `sections` into `manifest`: dict sections key by key, others replaced."""
    for key, value in sections.items():
        manifest[key] = {**manifest.get(key, {}), **value} if isinstance(value, dict) else value
    return manifest


def read_manifest(run_dir):
    """Returns a finished run's manifest; raises RunError for anything else."""
    path = os.path.join(run_dir, MANIFEST)
    if not os.path.isdir(run_dir):
        raise RunError(f"Run directory not found: {run_dir}.")
    if not os.path.exists(path):
        raise RunError(f"{run_dir} is not a finished run: it has no {MANIFEST} (the run did not finish, "
                       "or the path is wrong). Rerun its recipe to finish it.")
    try:
        with open(path) as f:
            manifest = json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is corrupt ({err}); rerun the recipe to rewrite the run.") from err
    listed = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(listed, dict) or not all(isinstance(e, dict) and "sha256" in e for e in listed.values()):
        raise RunError(f"{path} is corrupt: it has no valid 'artifacts' list; rerun the recipe to rewrite the run.")
    return manifest


def verify(run_dir, relpath, manifest=None):
    """Checks one artifact against the sha256 in the manifest; returns its full path."""
    entry = (manifest or read_manifest(run_dir))["artifacts"].get(relpath)
    path = os.path.join(run_dir, relpath)
    if entry is None:
        raise RunError(f"{run_dir}: the manifest lists no artifact '{relpath}'.")
    if not os.path.isfile(path):
        raise RunError(f"{path} is missing, though the manifest lists it.")
    if sha256(path) != entry["sha256"]:
        raise RunError(f"{path} fails its checksum: its sha256 differs from the manifest's (corrupt or changed file).")
    return path


def verify_run(run_dir):
    """Checks every artifact of a finished run against its manifest; returns the manifest.

    Raises:
        RunError: naming the first file that is missing or changed.
    """
    manifest = read_manifest(run_dir)
    for relpath in manifest["artifacts"]:
        verify(run_dir, relpath, manifest)
    return manifest


def load_model(path):
    """Loads a model from a finished run directory (checksum verified) or a `.keras` file, in safe mode."""
    if os.path.isdir(path):
        path = verify(path, MODEL_FILE)
    elif not os.path.exists(path):
        raise RunError(f"Model not found: {path}. Pass a finished run directory or a .keras file.")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except (ValueError, TypeError, OSError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunError(f"{path} could not be loaded: {first_line} (a corrupt file, or one written by "
                       "an incompatible version of the zoo: retrain it with its recipe).") from err


def library_versions():
    import numpy
    import tensorflow
    import tensorflow_probability

    import zoo

    return {"python": platform.python_version(), "zoo": zoo.__version__, "tensorflow": tensorflow.__version__,
            "keras": keras.__version__, "tensorflow_probability": tensorflow_probability.__version__,
            "numpy": numpy.__version__}


def _inventory(out):
    files = {}
    for root, dirs, names in os.walk(out):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and
                         not (root == out and d in WORKING_DIRS))
        for name in sorted(names):
            path = os.path.join(root, name)
            rel = os.path.relpath(path, out)
            if rel != MANIFEST and not name.startswith("."):
                files[rel] = {"sha256": sha256(path), "bytes": os.path.getsize(path)}
    return files
