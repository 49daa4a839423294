"""Finished runs are never lost, faked or mixed: the manifest comes last, updates verify first and
swap in whole, one writer at a time, no silent overwrite, and a full disk ends cleanly."""

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

from zoo import artifacts, callbacks, cli, evaluate, files, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "digits", "--latent-dim", "2", "--width", "8", "--nll-samples", "0"]


def recipe(*args):
    return [sys.executable, os.path.join(ROOT, "recipes", "train_vae.py"), *TINY, *args]


def start_until(command, line):
    """Starts `command`; returns the process once a stdout line contains `line`."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for text in process.stdout:
        if line in text:
            return process
    process.wait(timeout=60)
    raise AssertionError(f"{command} ended before printing {line!r}: {process.stderr.read()}")


def snapshot(run):
    """Every file under `run` with its bytes, to show that nothing changed."""
    return {os.path.relpath(os.path.join(root, name), run): open(os.path.join(root, name), "rb").read()
            for root, _, names in os.walk(run) for name in names}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("finished") / "run"
    assert cli.main("vae", "", [*TINY, "--epochs", "1", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run(finished, tmp_path):
    """A private copy of the finished run."""
    copy = tmp_path / "run"
    shutil.copytree(finished, copy)
    return copy


def test_a_finished_run_holds_everything_and_verifies(run):
    manifest = artifacts.verify_run(str(run))
    assert {"model.keras", "metrics.json", "history.csv"} <= set(manifest["artifacts"])
    assert any(rel.startswith("pictures/") for rel in manifest["artifacts"])
    assert manifest["evaluation"]["metrics_file"] == "metrics.json"
    assert not (run / "checkpoints").exists()
    assert not [name for name in os.listdir(run) if name.startswith(".")]


def test_rerunning_a_finished_run_is_refused(run, capsys):
    before = snapshot(run)
    assert cli.main("vae", "", [*TINY, "--epochs", "1", "--out", str(run)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a finished run" in err and "--overwrite" in err
    assert snapshot(run) == before


def test_a_kill_during_evaluation_leaves_no_manifest_and_the_rerun_finishes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def killed(*args, **kwargs):
        raise SystemExit("killed while evaluating")

    monkeypatch.setattr(evaluate, "write_evaluation", killed)
    with pytest.raises(SystemExit):
        cli.main("vae", "", [*TINY, "--epochs", "2", "--out", str(out)])
    assert (out / "model.keras").exists() and not (out / "manifest.json").exists()
    with pytest.raises(artifacts.RunError, match="not a finished run"):
        artifacts.load_model(str(out))
    assert callbacks.read_state(str(out / "checkpoints"))["epoch"] == 2

    monkeypatch.undo()
    assert cli.main("vae", "", [*TINY, "--epochs", "2", "--out", str(out)]) == 0
    assert "2 of 2 epochs done" in capsys.readouterr().out  # nothing trained again
    manifest = artifacts.verify_run(str(out))
    assert "metrics.json" in manifest["artifacts"] and not (out / "checkpoints").exists()
    with open(out / "history.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["0", "1"]


def test_a_full_disk_at_the_manifest_keeps_the_checkpoints(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(artifacts, "write_json", full)
    assert cli.main("vae", "", [*TINY, "--epochs", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith("error: no space left on the device")
    assert not (out / "manifest.json").exists() and callbacks.read_state(str(out / "checkpoints"))["epoch"] == 1
    assert not [name for name in os.listdir(out) if name.startswith(".")]


def test_leftovers_of_killed_writers_are_removed_before_a_run_goes_on(tmp_path):
    out = tmp_path / "run"
    (out / ".saved_model.x1").mkdir(parents=True)
    (out / ".tmpab12-model.keras").write_text("half")
    (out / "history.csv").write_text("epoch,loss\n")
    artifacts.begin_run(str(out))
    assert sorted(os.listdir(out)) == ["history.csv"]


@pytest.mark.parametrize("damage", ["change history.csv", "delete saved_model", "delete metrics.json"])
@pytest.mark.parametrize("tool", ["evaluate", "export"])
def test_updates_refuse_a_changed_or_missing_artifact(damage, tool, run, capsys):
    if damage == "change history.csv":
        with open(run / "history.csv", "a") as f:
            f.write("99,0.0\n")
        named = "history.csv"
    elif damage == "delete saved_model":
        shutil.rmtree(run / "saved_model")
        named = "saved_model/"
    else:
        os.remove(run / "metrics.json")
        named = "metrics.json"
    before = snapshot(run)
    if tool == "evaluate":
        code = evaluate.main([str(run), "--k", "0", "--no-pictures"])
    else:
        from export.__main__ import main as export_main
        code = export_main([str(run), "--formats", "onnx"])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and named in err, err
    assert "Traceback" not in err
    assert snapshot(run) == before


def test_a_failed_export_leaves_the_run_as_it_was(run, monkeypatch):
    from export import pipeline
    from export.formats import FORMATS

    def broken(*args):
        raise RuntimeError("converter crashed")

    monkeypatch.setitem(FORMATS, "tflite", dataclasses.replace(FORMATS["tflite"], write=broken))
    before = snapshot(run)
    with pytest.raises(RuntimeError, match="converter crashed"):
        pipeline.export_run(str(run), "onnx,tflite", print_fn=lambda *a, **k: None)  # onnx done, then a crash
    assert snapshot(run) == before
    assert sorted(os.listdir(run.parent)) == [".run.lock", "run"]


def test_an_update_swaps_the_whole_run_in(run):
    from export import pipeline

    pipeline.export_run(str(run), "onnx", print_fn=lambda *a, **k: None)
    manifest = artifacts.verify_run(str(run))
    assert "decoder.onnx" in manifest["artifacts"] and manifest["export"]["onnx"]["passed"]
    assert sorted(os.listdir(run.parent)) == [".run.lock", "run"]


def test_manifest_without_an_artifact_list_is_refused(run):
    (run / "manifest.json").write_text(json.dumps({"variant": "vae"}))
    with pytest.raises(artifacts.RunError, match="no valid 'artifacts' list"):
        artifacts.verify_run(str(run))


def test_exchange_swaps_two_folders_with_and_without_renameat2(tmp_path, monkeypatch):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "x").write_text("a")
    (b / "x").write_text("b")
    files.exchange(str(a), str(b))
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("b", "a")

    class NoRenameat2:  # a C library without it: the three-rename fallback
        def __init__(self, *args, **kwargs):
            pass

    monkeypatch.setattr(files.ctypes, "CDLL", NoRenameat2)
    files.exchange(str(a), str(b))
    assert ((a / "x").read_text(), (b / "x").read_text()) == ("a", "b")
    assert sorted(os.listdir(tmp_path)) == ["a", "b"]


def test_a_swap_cut_short_by_a_kill_is_finished_by_the_next_writer(run):
    """exchange's fallback leaves the new run at .NAME.swap for a moment; the next lock puts it in place."""
    os.replace(run, run.parent / ".run.swap")
    with artifacts.locked(str(run)):
        pass
    artifacts.verify_run(str(run))
    assert sorted(os.listdir(run.parent)) == [".run.lock", "run"]


def test_a_second_writer_exits_2_naming_the_first(tmp_path):
    out = tmp_path / "run"
    first = start_until(recipe("--epochs", "500", "--out", str(out)), "epoch 1/")
    try:
        second = subprocess.run(recipe("--epochs", "1", "--out", str(out)), capture_output=True, text=True,
                                timeout=300)
        assert second.returncode == 2
        assert f"is in use by process {first.pid}" in second.stderr and second.stderr.count("\n") == 1
        export = subprocess.run([sys.executable, "-m", "export", str(out)], capture_output=True, text=True,
                                timeout=300, cwd=ROOT)
        assert export.returncode == 2 and f"in use by process {first.pid}" in export.stderr
    finally:
        first.kill()
        first.wait(timeout=60)
    assert not (out / "manifest.json").exists()


def test_overwrite_keeps_the_old_run_whole_until_the_new_one_finishes(run):
    from export import pipeline

    pipeline.export_run(str(run), "onnx", print_fn=lambda *a, **k: None)
    old = artifacts.read_manifest(str(run))
    second = start_until(recipe("--epochs", "3", "--seed", "1", "--overwrite", "--out", str(run)), "epoch 1/")
    try:
        assert artifacts.verify_run(str(run)) == old  # mid-training, the old run is whole
        artifacts.load_model(str(run))
        out, err = second.communicate(timeout=600)
    finally:
        second.kill()
    assert second.returncode == 0, err
    new = artifacts.verify_run(str(run))
    assert new["training"]["seed"] == 1 and new["metrics"]["epochs_trained"] == 3
    assert "decoder.onnx" not in new["artifacts"] and not (run / "decoder.onnx").exists()
    assert sorted(os.listdir(run.parent)) == [".run.lock", "run"]
    assert not [name for name in os.listdir(run) if name.startswith(".")]


@pytest.fixture
def small_disk(tmp_path):
    """A 40 MiB tmpfs (mounting needs root, as CI runs)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=40m", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_a_full_disk_exits_2_with_one_line_and_the_last_checkpoint_loads(small_disk):
    out = small_disk / "run"
    process = start_until(recipe("--epochs", "500", "--out", str(out)), "epoch 2/")
    with open(small_disk / "filler", "wb") as f:  # fill the disk while it trains
        with pytest.raises(OSError, match="No space left"):
            while True:
                f.write(bytes(1 << 16))
                f.flush()
    _, err = process.communicate(timeout=300)
    assert process.returncode == 2, err
    assert err.startswith("error: no space left on the device") and err.count("\n") == 1, err
    assert not (out / "manifest.json").exists()
    os.remove(small_disk / "filler")

    state = callbacks.read_state(str(out / "checkpoints"))
    config = {k: v for k, v in state["fingerprint"]["config"].items() if k != "dtype"}
    model = training.build_model("vae", **config)
    restored = callbacks.Checkpoint(str(out / "checkpoints"), state["fingerprint"]).restore(model)
    # "epoch 2/" is printed before epoch 2 is checkpointed: the disk may fill before or after that save
    assert restored["epoch"] in (1, 2) and all(np.isfinite(w).all() for w in model.get_weights())
    assert not (out / "checkpoints" / "state.json").read_text().count(".tmp")


def test_sigkill_of_an_update_leaves_the_old_or_the_new_run(run):
    """Killed while exporting: the run at its path verifies, whichever moment the kill hit."""
    process = subprocess.Popen([sys.executable, "-m", "export", str(run), "--formats", "onnx,tflite"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    for line in process.stdout:
        if line.startswith("onnx"):
            process.send_signal(signal.SIGKILL)
            break
    process.wait(timeout=60)
    manifest = artifacts.verify_run(str(run))
    assert "export" not in manifest  # killed before the swap: the old run
    assert subprocess.run([sys.executable, "-m", "export", str(run), "--formats", "onnx"], capture_output=True,
                          cwd=ROOT, timeout=300).returncode == 0
    assert sorted(os.listdir(run.parent)) == [".run.lock", "run"]
