"""Make a pretrained bundle from its recipe, and check a rebuilt one against the bundled one.

`build` runs the recipe command of `RECIPES` in a fresh run directory, exports the decoder to
ONNX and TFLite (parity-checked against the SavedModel), and copies the bundle's files into
place with a manifest. Recipes live in the source checkout (`recipes/`), so building needs one.
"""

import os
import shlex
import shutil
import subprocess
import sys
import tempfile

from zoo import files
from zoo.pretrained import BUNDLED, ENCODER_FILES, FORMATS, MANIFEST, RECIPES, PretrainedError, read_manifest

BUNDLE_FILES = tuple(name for names in (*FORMATS.values(), *ENCODER_FILES.values()) for name in names)
EXPORT_FORMATS, EXPORT_PARTS = ("onnx", "tflite"), ("decoder", "encoder")
# A rebuilt metric matches the bundled one when it is within REL_TOLERANCE of it (relative), or,
# for rates in [0, 1] (accuracies, AUROCs, codebook usage, MIG, scores), within RATE_TOLERANCE
# (absolute): a rate near 0 moves a lot relative to itself. Training on a CPU with the same seed
# repeats closely but not bit for bit (thread timing changes the order of float sums). Speeds are
# not compared.
REL_TOLERANCE, RATE_TOLERANCE = 0.03, 0.02
RATES = ("accuracy", "auroc", "usage", "mig", "score", "dci")
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def build(name, root=BUNDLED, recipe=None, print_fn=print):
    """Trains and exports model `name` with its recipe and writes the bundle `root/name`.

    Args:
        name: a key of `RECIPES`, or any name when `recipe` is given.
        root: the folder that holds bundles.
        recipe: the recipe command to run instead of `RECIPES[name]` (without `--out`).

    Returns:
        The bundle's manifest.

    Raises:
        PretrainedError: an unknown name, no source checkout, or a recipe that failed.
    """
    from export import export_run
    from zoo import artifacts

    command = recipe or RECIPES.get(name)
    if command is None:
        raise PretrainedError(f"No recipe for '{name}': expected one of {', '.join(RECIPES)}.")
    argv = shlex.split(command)
    script = os.path.join(SOURCE_ROOT, argv[1])
    if argv[0] != "python" or not os.path.isfile(script):
        raise PretrainedError(f"Building '{name}' runs `{command}` from a source checkout, and {script} "
                              "is not there: clone the project's repository to rebuild.")
    with tempfile.TemporaryDirectory(prefix=f"vae-zoo-{name}-") as work:
        run_dir = os.path.join(work, "run")
        print_fn(f"{name}: {command}", flush=True)
        result = subprocess.run([sys.executable, script, *argv[2:], "--out", run_dir], cwd=SOURCE_ROOT)
        if result.returncode:
            raise PretrainedError(f"The recipe for '{name}' failed with exit code {result.returncode}.")
        report = export_run(run_dir, EXPORT_FORMATS, print_fn=print_fn, parts=EXPORT_PARTS)
        run = artifacts.read_manifest(run_dir)
        manifest = {"name": name, "variant": run["variant"], "dataset": run["dataset"]["name"],
                    "recipe": f"{command} --out runs/{name}",
                    "export": f"python -m export runs/{name} --formats {','.join(EXPORT_FORMATS)} "
                              f"--parts {','.join(EXPORT_PARTS)}",
                    "metrics": run["metrics"], "config": run["config"], "parity": report,
                    "versions": run["versions"], "files": {}}
        with files.atomic_folder(os.path.join(root, name)) as staging:
            for filename in BUNDLE_FILES:
                source, path = os.path.join(run_dir, filename), os.path.join(staging, filename)
                if filename == artifacts.MODEL_FILE:
                    save_for_inference(source, path)
                else:
                    shutil.copyfile(source, path)
                manifest["files"][filename] = {"sha256": files.sha256(path), "bytes": os.path.getsize(path)}
            files.write_json_atomic(os.path.join(staging, MANIFEST), manifest)
    return manifest


def save_for_inference(model_path, target):
    """Saves the model of `model_path` to `target` without its optimizer state, which would
    triple the file (Adam keeps two moments per weight): a bundle is for inference."""
    from zoo import artifacts, distribute

    distribute.float32_copy(artifacts.load_model(model_path)).save(target)  # a fresh model: no optimizer


def compare(old, new):
    """Rows `(metric, old, new, within_tolerance)` for the numeric metrics both manifests have."""
    rows = []
    for key in sorted(set(old["metrics"]) & set(new["metrics"])):
        a, b = old["metrics"][key], new["metrics"][key]
        if isinstance(a, bool) or not isinstance(a, (int, float)) or not isinstance(b, (int, float)):
            continue
        if "per_second" in key:
            continue
        rate = any(word in key for word in RATES)
        rows.append((key, a, b, abs(b - a) <= (RATE_TOLERANCE if rate else REL_TOLERANCE * abs(a))))
    return rows


def rebuild(name, root=BUNDLED, check_only=False, force=False, print_fn=print):
    """Rebuilds bundle `name` with its recipe and compares its metrics with the current bundle's.

    The new bundle replaces the old one when every metric is within tolerance, when there was no
    bundle, or with `force`; with `check_only` it never does. Returns True when the metrics match.
    """
    current = os.path.join(root, name)
    old = read_manifest(current) if os.path.isfile(os.path.join(current, MANIFEST)) else None
    with tempfile.TemporaryDirectory(dir=root, prefix=f".rebuild-{name}.") as scratch:
        new = build(name, scratch, print_fn=print_fn)
        rows = compare(old, new) if old else []
        for key, a, b, ok in rows:
            print_fn(f"  {key:36s} bundled {a:12.5g}  rebuilt {b:12.5g}  {'ok' if ok else 'DIFFERS'}")
        matches = all(ok for *_, ok in rows)
        if not matches:
            print_fn(f"{name}: rebuilt metrics differ from the bundled ones by more than {REL_TOLERANCE:.0%} "
                     f"(rates: {RATE_TOLERANCE:g}).")
        if not check_only and (matches or force):
            shutil.rmtree(current, ignore_errors=True)
            os.replace(os.path.join(scratch, name), current)
            print_fn(f"{name}: wrote {current}")
    return matches
