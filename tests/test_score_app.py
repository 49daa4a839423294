"""apps/score.py on the bundled cvae-mnist5k: digits against noise and sprites, without TensorFlow."""

import csv
import os
import subprocess
import sys

import numpy as np

from zoo import data, pretrained

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
APP = os.path.join(ROOT, "apps", "score.py")
BUNDLE = os.path.join(pretrained.BUNDLED, "cvae-mnist5k")
HEAVY = ("tensorflow", "keras", "tensorflow_probability", "matplotlib", "sklearn")


def test_score_app_separates_outliers_and_writes_a_table_csv_and_png(tmp_path, mnist_small):
    _, (digits, _) = mnist_small
    rng = np.random.default_rng(0)
    sources = {"digits": (digits[:30] * 255).astype(np.uint8), "noise": rng.integers(0, 256, (30, 28, 28), np.uint8),
               "sprites": (data.dsprites(30, seed=7)[0] * 255).astype(np.uint8)}
    paths = []
    for name, x in sources.items():
        paths.append(str(tmp_path / f"{name}.npz"))
        if name == "sprites":  # 64x64 sprites, reduced to 28x28 by block means of the central 56x56
            x = x[:, 4:60, 4:60, 0].reshape(30, 28, 2, 28, 2).mean((2, 4)).astype(np.uint8)
        np.savez(paths[-1], x=x)
    out = [f"--csv={tmp_path / 'scores.csv'}", f"--png={tmp_path / 'odd.png'}", "--k=4"]
    code = ("import runpy, sys; sys.argv = sys.argv[1:]; "
            "exec('try: runpy.run_path(sys.argv[0], run_name=\"__main__\")\\nexcept SystemExit as e: assert not e.code, e'); "
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code, APP, BUNDLE, *paths, *out], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1] == "[]"  # no TensorFlow, Keras, TFP, matplotlib or scikit-learn
    rows = {line.split(" | ")[0].strip("| ").split(os.sep)[-1]: line.split(" | ") for line in lines if ".npz" in line}
    assert float(rows["noise.npz"][5]) >= 0.98 and float(rows["sprites.npz"][5]) >= 0.9, result.stdout
    with open(tmp_path / "scores.csv") as f:
        table = list(csv.DictReader(f))
    assert len(table) == 90 and {row["verdict"] for row in table if "noise" in row["source"]} == {
        "an outlier: above 99.9% of the test images"}
    assert (tmp_path / "odd.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_sources_exit_2_with_one_line(tmp_path):
    np.savez(tmp_path / "wrong.npz", x=np.zeros((3, 8, 8), np.uint8))
    for source, message in ((tmp_path / "wrong.npz", "expected images of shape (N, 28, 28, 1)"),
                            (tmp_path / "missing.txt", "expected an .npz file or a folder")):
        result = subprocess.run([sys.executable, APP, BUNDLE, str(source)], capture_output=True, text=True,
                                timeout=120, cwd=tmp_path)
        assert result.returncode == 2 and message in result.stderr and len(result.stderr.splitlines()) == 1
