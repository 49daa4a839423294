"""Chaos benchmark: SIGKILL a recipe and its export at random moments and check what is left.

    python benchmarks/chaos.py --kills 30 --seed 0

One calibration run times the whole life of a small run: the recipe (training, evaluation,
pictures, the manifest) and then `python -m export`. Each trial starts a fresh run, kills it with
SIGKILL at a moment drawn uniformly over that life, checks the run directory, then reruns the
command that was killed. A trial whose process ended before its moment (run times vary on a
shared machine) is no kill: it is counted as a miss and drawn again, until `--kills` kills. After each kill the run must be consistent: either it has no manifest,
or every artifact verifies against it, `metrics.json` is listed and no checkpoints remain. The
rerun must finish (or, for a run whose manifest was already written, refuse to train over it),
and `history.csv` must hold each epoch exactly once. Prints one line per trial and a summary.
"""

import argparse
import collections
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import zoo  # noqa: E402

zoo.import_tensorflow()  # quietly, before zoo.artifacts imports Keras
from zoo import artifacts  # noqa: E402

EPOCHS = 3


def commands(out):
    recipe = [sys.executable, os.path.join(ROOT, "recipes", "train_vae.py"), "--dataset", "digits", "--epochs",
              str(EPOCHS), "--latent-dim", "2", "--width", "8", "--nll-samples", "10", "--out", out]
    export = [sys.executable, "-m", "export", out, "--formats", "onnx,tflite"]
    return recipe, export


def run(command, kill_after=None):
    """Runs `command` (killing it after `kill_after` seconds); returns (exit code, seconds, last line)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            code = process.wait(timeout=kill_after)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            code = process.wait()
        log.seek(0)
        lines = [line.strip() for line in log if line.strip()]
    return code, time.perf_counter() - start, lines[-1] if lines else ""


def stage(killed_export, last):
    """Which part of a run's life a kill hit, from the last line the process printed."""
    if killed_export:
        return "export"
    if not last:
        return "start-up"
    if last.startswith(("epoch", "training", "likelihood", "note")):
        return "training"
    return "evaluation, pictures, manifest"


def problems(out):
    """What is inconsistent in the run directory `out` (an empty list when nothing is)."""
    if not artifacts.is_finished(out):
        return []
    found = []
    try:
        manifest = artifacts.verify_run(out)
    except artifacts.RunError as err:
        return [str(err)]
    if "metrics.json" not in manifest["artifacts"]:
        found.append("finished without metrics.json")
    if os.path.exists(os.path.join(out, "checkpoints")):
        found.append("finished with checkpoints/")
    hidden = [name for name in os.listdir(out) if name.startswith(".")]
    if hidden:
        found.append(f"finished with leftovers {hidden}")
    return found


def epochs_logged(out):
    with open(os.path.join(out, "history.csv"), newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=30, help="number of SIGKILLs (one per trial)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="zoo-chaos-")
    try:
        out = os.path.join(work, "calibration")
        recipe, export = commands(out)
        code_r, recipe_s, _ = run(recipe)
        code_e, export_s, _ = run(export)
        if code_r or code_e:
            sys.exit(f"calibration failed: recipe exit {code_r}, export exit {code_e}")
        print(f"life of a run: recipe {recipe_s:.1f} s, export {export_s:.1f} s", flush=True)

        inconsistent = failed_reruns = misses = kills = 0
        stages = collections.Counter()
        while kills < args.kills:
            out = os.path.join(work, f"trial-{kills + misses}")
            recipe, export = commands(out)
            moment = rng.uniform(0, recipe_s + export_s)
            if moment < recipe_s:
                killed, (code, _, last) = recipe, run(recipe, kill_after=moment)
            else:
                if run(recipe)[0]:
                    sys.exit(f"the recipe failed before its export could be killed: {' '.join(recipe)}")
                killed, (code, _, last) = export, run(export, kill_after=moment - recipe_s)
            if code != -signal.SIGKILL:
                misses += 1
                shutil.rmtree(out, ignore_errors=True)
                continue
            kills += 1
            found = problems(out)
            rerun, _, _ = run(killed)
            finished_before = rerun == 2 and killed is recipe and artifacts.is_finished(out)
            found += problems(out)
            if not artifacts.is_finished(out):
                found.append("the rerun left no finished run")
            elif epochs_logged(out) != list(range(EPOCHS)):
                found.append(f"history.csv logs epochs {epochs_logged(out)}")
            if rerun != 0 and not finished_before:
                failed_reruns += 1
                found.append(f"rerun exit {rerun}")
            inconsistent += bool(found)
            hit = stage(killed is export, last)
            stages[hit] += 1
            print(f"kill {kills:2d} at {moment:5.1f} s, {hit} (last line: {last[:40]!r}) -> "
                  f"{'; '.join(found) or 'consistent'}", flush=True)
            shutil.rmtree(out, ignore_errors=True)
        print("kills by stage: " + ", ".join(f"{name} {count}" for name, count in stages.most_common()))
        print(f"{kills} kills, {inconsistent} inconsistent states, {failed_reruns} failed reruns "
              f"({misses} draws fell after the process had ended)")
        return 1 if inconsistent else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
