"""The run directory: the one place that writes it and reads it back.

A finished run holds `model.keras`, `saved_model/` and, written last and atomically,
`manifest.json` listing every artifact with its sha256 and size. A folder without a manifest
is not a finished run: `read_manifest` and `load_model` refuse it.
"""

import json
import os
import platform

import keras

from zoo import models  # noqa: F401  (registers every variant, so model.keras files load)
from zoo.files import atomic_folder, atomic_write, sha256, write_json_atomic

MANIFEST = "manifest.json"
MODEL_FILE = "model.keras"
SAVED_MODEL_DIR = "saved_model"
WORKING_DIRS = ("checkpoints", "logs")  # resumable state and TensorBoard logs: not artifacts


class RunError(ValueError):
    """A run directory is missing, unfinished or corrupt."""


def begin_run(out):
    """Makes `out` ready for a (re)run: an old manifest goes first, so a half-rewritten run never
    looks finished."""
    os.makedirs(out, exist_ok=True)
    if os.path.exists(os.path.join(out, MANIFEST)):
        os.remove(os.path.join(out, MANIFEST))


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


def write_manifest(out, **fields):
    """Writes `manifest.json` last and atomically: `fields` (variant, config, dataset, metrics, ...)
    plus library versions and every artifact file with its sha256 and size."""
    manifest = {**fields, "versions": library_versions(), "artifacts": _inventory(out)}
    write_json_atomic(os.path.join(out, MANIFEST), manifest)
    return manifest


def update_manifest(run_dir, **sections):
    """Merges `sections` into a finished run's manifest and refreshes its artifact list."""
    manifest = read_manifest(run_dir)
    for key, value in sections.items():
        manifest[key] = {**manifest.get(key, {}), **value} if isinstance(value, dict) else value
    manifest["artifacts"] = _inventory(run_dir)
    write_json_atomic(os.path.join(run_dir, MANIFEST), manifest)
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
            return json.load(f)
    except (OSError, json.JSONDecodeError) as err:
        raise RunError(f"{path} is corrupt ({err}); rerun the recipe to rewrite the run.") from err


def verify(run_dir, relpath):
    """Checks one artifact against the sha256 in the manifest; returns its full path."""
    entry = read_manifest(run_dir)["artifacts"].get(relpath)
    path = os.path.join(run_dir, relpath)
    if entry is None:
        raise RunError(f"{run_dir}: the manifest lists no artifact '{relpath}'.")
    if not os.path.exists(path):
        raise RunError(f"{path} is missing, though the manifest lists it.")
    if sha256(path) != entry["sha256"]:
        raise RunError(f"{path} fails its checksum: its sha256 differs from the manifest's (corrupt or changed file).")
    return path


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
