"""Training under faults: SIGKILL and rerun, Ctrl-C, NaN losses, and bad inputs (exit code 2)."""

import csv
import json
import os
import signal
import subprocess
import sys

import keras
import numpy as np
import pytest

from zoo import artifacts, callbacks, cli, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FAST = ["--latent-dim", "4", "--width", "8", "--nll-samples", "0"]


def recipe(name, *args):
    return [sys.executable, os.path.join(ROOT, "recipes", f"train_{name}.py"), *args]


def start_and_signal(command, line, sig):
    """Starts `command`, sends `sig` once a stdout line starts with `line` (an epoch's closing line, not
    the step lines inside it, which are indented); returns (exit code, stdout, stderr)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for text in process.stdout:
        seen.append(text)
        if text.startswith(line):
            process.send_signal(sig)
            break
    out, err = process.communicate(timeout=300)
    return process.returncode, "".join(seen) + out, err


def epochs_in(history):
    with open(history, newline="") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def test_sigkill_then_rerun_resumes(tmp_path, mnist_npz):
    out = tmp_path / "run"
    command = recipe("vae", "--dataset", mnist_npz, "--epochs", "10", *FAST, "--out", str(out))
    code, _, _ = start_and_signal(command, "epoch 2/10", signal.SIGKILL)
    assert code == -signal.SIGKILL
    assert not (out / "manifest.json").exists()
    state = callbacks.read_state(str(out / "checkpoints"))
    done = state["epoch"]
    assert 1 <= done < 10  # the kill may land before epoch 2 is checkpointed
    with open(out / "history.csv") as f:
        before = f.read().splitlines()

    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert f"resuming from {out / 'checkpoints'}: {done} of 10 epochs done" in result.stdout
    assert f"epoch {done + 1}/10" in result.stdout and "epoch 1/10" not in result.stdout
    assert epochs_in(out / "history.csv") == list(range(10))
    with open(out / "history.csv") as f:
        assert f.read().splitlines()[: done + 1] == before[: done + 1]  # the finished epochs' rows are kept
    manifest = artifacts.read_manifest(str(out))
    assert manifest["metrics"]["epochs_trained"] == 10 and manifest["training"]["resumed_at_epoch"] == done
    for rel in manifest["artifacts"]:
        artifacts.verify(str(out), rel)
    assert not (out / "checkpoints").exists()  # a finished run has nothing to resume


def test_sigint_saves_the_state_and_exits_130(tmp_path, mnist_npz):
    out = tmp_path / "run"
    code, _, err = start_and_signal(recipe("vae", "--dataset", mnist_npz, "--epochs", "200", *FAST, "--out", str(out)),
                                    "epoch 1/200", signal.SIGINT)
    assert code == 130, err
    assert "interrupted. The state" in err and "rerun the same command" in err and "Traceback" not in err
    assert callbacks.read_state(str(out / "checkpoints"))["epoch"] >= 1
    assert not (out / "manifest.json").exists()


class PoisonAt(keras.callbacks.Callback):
    """Turns the decoder's last kernel into NaN when epoch `epoch` begins."""

    def __init__(self, epoch):
        super().__init__()
        self.epoch = epoch

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.epoch:
            kernel = self.model.decoder.layers[-1].kernel
            kernel.assign(np.full(kernel.shape, np.nan, np.float32))


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, mnist_small):
    (x, _), _ = mnist_small
    model = training.build_model("vae", input_shape=x.shape[1:], latent_dim=4, width=8)
    checkpoint = callbacks.Checkpoint(str(tmp_path), fingerprint={"test": 1})
    with pytest.raises(callbacks.Diverged, match=r"loss is nan at step 1 of epoch 3.*after epoch 2 is kept in"):
        model.fit(x[:64], batch_size=32, epochs=5, verbose=0,
                  callbacks=[PoisonAt(2), callbacks.StopOnNaN(checkpoint), checkpoint])
    state = callbacks.read_state(str(tmp_path))
    assert (state["epoch"], state["step"]) == (2, 0)
    good = training.build_model("vae", input_shape=x.shape[1:], latent_dim=4, width=8)
    assert callbacks.Checkpoint(str(tmp_path), fingerprint={"test": 1}).restore(good)["epoch"] == 2
    assert all(np.isfinite(w).all() for w in good.get_weights())


def test_resume_restores_early_stopping_and_throughput(tmp_path, mnist_small):
    (x, _), _ = mnist_small
    quiet = lambda *args, **kwargs: None

    def parts():
        model = training.build_model("vae", input_shape=x.shape[1:], latent_dim=4, width=8)
        stopping, progress = callbacks.ResumableEarlyStopping(patience=5), callbacks.Progress(64, 2, quiet)
        return model, stopping, progress, callbacks.Checkpoint(str(tmp_path), {"test": 1}, early_stopping=stopping,
                                                               progress=progress)

    fit = dict(x=x[:64], validation_data=(x[64:96],), batch_size=32, epochs=2, verbose=0)
    model, stopping, progress, checkpoint = parts()
    model.fit(**fit, callbacks=[progress, stopping, checkpoint])

    model, resumed, resumed_progress, checkpoint = parts()
    assert checkpoint.restore(model)["epoch"] == 2
    assert resumed_progress.throughput == progress.throughput
    model.fit(**fit, initial_epoch=2, callbacks=[resumed])  # nothing left to train: the best weights come back
    assert (resumed.best, resumed.best_epoch, resumed.wait) == (stopping.best, stopping.best_epoch, stopping.wait)
    for restored, best in zip(model.get_weights(), stopping.best_weights, strict=True):
        np.testing.assert_array_equal(restored, best)


def test_truncate_history_keeps_one_row_per_restored_epoch(tmp_path):
    path = tmp_path / "history.csv"
    path.write_text("epoch,loss\n0,3.0\n1,2.0\n2,1.5\n3,1.")  # epoch 2's checkpoint never landed; 3 half-written
    callbacks.truncate_history(str(path), 2)
    assert path.read_text().splitlines() == ["epoch,loss", "0,3.0", "1,2.0"]
    callbacks.truncate_history(str(path), 0)  # a fresh start
    assert not path.exists()


def test_checkpoints_of_another_run_are_refused(tmp_path, mnist_npz, capsys):
    out = tmp_path / "run"
    (out / "checkpoints").mkdir(parents=True)
    (out / "checkpoints" / "state.json").write_text(json.dumps(
        {"epoch": 1, "step": 0, "stopped": False, "weights": "x.weights.h5", "fingerprint": {"epochs": 99}}))
    assert cli.main("vae", "", ["--dataset", mnist_npz, "--epochs", "1", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds the state of an unfinished run with other settings" in err and "epochs" in err


def _npz(path, **arrays):
    np.savez(path, **arrays)
    return str(path)


def bad_datasets(tmp_path, mnist_small):
    (x, y), (xt, yt) = mnist_small
    nan = x.copy()
    nan[0, 0, 0, 0] = np.nan
    (tmp_path / "corrupt.npz").write_text("not a zip file")
    huge = y.copy()
    huge[0] = 10**9
    mnist = lambda name, **arrays: _npz(tmp_path / f"{name}.npz", **{"x_train": x, "y_train": y, "x_test": xt,
                                                                    "y_test": yt, **arrays})
    return {
        "label count mismatch": (mnist("count", y_train=y[:-1]), "vae",
                                 "x_train has 400 images but y_train has 399 labels"),
        "float labels": (mnist("float", y_train=y.astype(np.float32)), "cvae", "y_train holds float32 labels"),
        "negative labels": (mnist("negative", y_train=y - 1), "vae", "received a label of -1"),
        "label 10^9": (mnist("huge", y_train=huge), "cvae", "the largest label is 1000000000, which would make "
                                                          "1000000001 classes; expected at most 400 classes"),
        "no images": (mnist("empty", x_train=x[:0], y_train=y[:0]), "vae", "x_train holds no images"),
        "factor labels for a conditional model": (mnist("factors", y_train=np.stack([y, y], 1)), "cvae",
                                                  "received labels of shape (400, 2)"),
        "NaN pixels": (_npz(tmp_path / "nan.npz", x_train=nan, y_train=y, x_test=xt, y_test=yt), "vae", "NaN"),
        "values out of range": (_npz(tmp_path / "range.npz", x_train=x * 2, y_train=y, x_test=xt, y_test=yt), "vae",
                                "expected pixel values in [0, 1], received [0, 2]"),
        "wrong rank": (_npz(tmp_path / "rank.npz", x_train=x.reshape(len(x), -1), y_train=y, x_test=xt, y_test=yt),
                       "vae", "expected images of rank 4"),
        "labels out of range": (_npz(tmp_path / "labels.npz", x_train=x, y_train=y, x_test=xt, y_test=yt + 5), "cvae",
                                "labels must lie in [0, 9], received [5, 14]"),
        "corrupt file": (str(tmp_path / "corrupt.npz"), "vae", "not a readable .npz file"),
        "missing file": (str(tmp_path / "missing.npz"), "vae", "missing.npz"),
    }


@pytest.mark.parametrize("case", ["NaN pixels", "values out of range", "wrong rank", "labels out of range",
                                  "corrupt file", "missing file", "label count mismatch", "float labels",
                                  "negative labels", "label 10^9", "no images",
                                  "factor labels for a conditional model"])
def test_bad_dataset_exits_2_with_one_line(case, tmp_path, mnist_small, capsys):
    path, variant, message = bad_datasets(tmp_path, mnist_small)[case]
    out = tmp_path / "run"
    assert cli.main(variant, "", ["--dataset", path, "--epochs", "1", *FAST, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("error: ") and err.count("\n") == 1
    assert not (out / "manifest.json").exists()


@pytest.mark.parametrize("args, message", [
    (["--epochs", "-1"], "argument --epochs: expected a positive integer, received '-1'"),
    (["--batch-size", "0"], "argument --batch-size: expected a positive integer, received '0'"),
    (["--validation-split", "1.5"], "argument --validation-split: expected a fraction in [0, 1), received '1.5'"),
    (["--learning-rate", "nan"], "argument --learning-rate: expected a positive number, received 'nan'"),
    (["--clip-norm", "-2"], "argument --clip-norm: expected a positive number, received '-2'"),
    (["--strategy", "ring"], "argument --strategy: invalid choice: 'ring'"),
])
def test_bad_argument_exits_2(args, message, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main("vae", "", [*args, "--out", str(tmp_path / "run")])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as exit_:
        cli.main("vae", "", ["--out", str(tmp_path / "file")])
    assert exit_.value.code == 2 and "is a file; expected a run directory" in capsys.readouterr().err


@pytest.mark.parametrize("tf_config, message", [
    (None, "TF_CONFIG environment variable, which is not set"),
    ("{not json", "TF_CONFIG is not a cluster description"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 3}}',
     "names task worker 3, which its cluster"),
])
def test_bad_multiworker_config_exits_2(tf_config, message, tmp_path, mnist_npz, monkeypatch, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    argv = ["--strategy", "multiworker", "--dataset", mnist_npz, *FAST, "--out", str(tmp_path / "run")]
    assert cli.main("vae", "", argv) == 2
    assert message in capsys.readouterr().err
