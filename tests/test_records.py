"""Packed TFRecord datasets: `python -m zoo.data pack`, the index and its checksums, reading,
multi-worker shard assignment and hold-outs."""

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from test_folders import write_image
from zoo import data
from zoo.data.__main__ import main


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Two classes of 20 random images of mixed sizes, PNG and JPEG."""
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name in ("cats", "dogs"):
        for i in range(20):
            write_image(str(root / name / f"{i}.{'jpg' if i % 4 == 0 else 'png'}"),
                        rng.integers(0, 256, (10 + i % 5, 12, 3), dtype=np.uint8))
    return str(root)


@pytest.fixture(scope="module")
def packed(folder, tmp_path_factory):
    out = str(tmp_path_factory.mktemp("packed") / "out")
    assert main(["pack", folder, out, "--shards", "4", "--image-size", "8x10"]) == 0
    return out


def canonical(x, y):
    """Images and labels in an order that does not depend on how they were stored."""
    order = np.argsort([image.tobytes() for image in x], kind="stable")
    return x[order], y[order]


def test_pack_round_trip_keeps_images_labels_and_classes(folder, packed):
    index = json.load(open(os.path.join(packed, "index.json")))
    assert index["image_shape"] == [8, 10, 3] and index["class_names"] == ["cats", "dogs"]
    assert {s: e["count"] for s, e in index["splits"].items()} == {"train": 36, "test": 4}
    assert [s["file"] for s in index["splits"]["train"]["shards"]] == [f"train-0000{k}-of-00004.tfrecord"
                                                                       for k in range(4)]
    for entry in index["splits"].values():
        for shard in entry["shards"]:
            path = os.path.join(packed, shard["file"])
            assert shard["sha256"] == hashlib.sha256(open(path, "rb").read()).hexdigest()
            assert shard["records"] == sum(1 for _ in tf.data.TFRecordDataset(path))
    for split in data.SPLITS:
        source = data.open_split(folder, split, image_size=(8, 10))
        stored = data.open_split(packed, split)
        assert (stored.image_shape, stored.count, stored.class_names, stored.labels) == \
            (source.image_shape, source.count, source.class_names, source.labels)
        (x, y), (xs, ys) = canonical(*source.arrays()), canonical(*stored.arrays())
        np.testing.assert_array_equal(x, xs)
        np.testing.assert_array_equal(y, ys)
    first = next(iter(data.open_split(packed, "train").dataset()))
    assert first[0].dtype == tf.float32 and first[1].dtype == tf.int32 and first[1].shape == ()
    resized = data.open_split(packed, "test", image_size=4, channels=1)
    assert resized.arrays()[0].shape == (4, 4, 4, 1)


def copy_of(packed, tmp_path):
    out = tmp_path / "copy"
    out.mkdir()
    for name in os.listdir(packed):
        (out / name).write_bytes(open(os.path.join(packed, name), "rb").read())
    return str(out)


def test_a_changed_shard_is_detected(packed, tmp_path, capsys):
    out = copy_of(packed, tmp_path)
    shard = os.path.join(out, "train-00002-of-00004.tfrecord")
    raw = bytearray(open(shard, "rb").read())
    raw[-20] ^= 0xFF  # one pixel: the size is the same, the sha256 is not
    open(shard, "wb").write(bytes(raw))
    with pytest.raises(data.DatasetError, match=f"^{shard}: its sha256 differs from index.json"):
        data.open_split(out, "train")
    assert data.open_split(out, "test").count == 4  # the other split is intact
    assert main(["verify", out]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: {shard}: its sha256 differs from index.json: changed since it was packed"]
    assert main(["verify", packed]) == 0
    split = data.open_split(out, "train", skip_bad_files=True)
    records = json.load(open(os.path.join(out, "index.json")))["splits"]["train"]["shards"][2]["records"]
    assert [file for file, _ in split.skipped] == [shard] and split.count == 36 - records
    assert len(split.arrays()[0]) == split.count


def test_workers_read_disjoint_shards_that_cover_the_split(packed):
    split = data.open_split(packed, "train")
    images = lambda ds: {x.tobytes() for x, _ in ds.as_numpy_iterator()}
    a, b = images(split.dataset(shard=(2, 0))), images(split.dataset(shard=(2, 1)))
    assert a and b and not a & b and a | b == images(split.dataset())
    assert [s["file"] for s in split.shard(2, 1).shards] == ["train-00001-of-00004.tfrecord",
                                                            "train-00003-of-00004.tfrecord"]
    assert split.shard(2, 0).count + split.shard(2, 1).count == split.count
    options = split.dataset(shard=(2, 0)).options().experimental_distribute.auto_shard_policy
    assert options == tf.data.experimental.AutoShardPolicy.OFF
    with pytest.raises(data.DatasetError, match="4 shards for 5 workers.*--shards 5"):
        split.dataset(shard=(5, 0))


def test_holdout_shuffle_and_subsets_are_deterministic(packed):
    split = data.open_split(packed, "train")
    rest, held = split.holdout(0.25, seed=1)
    assert (rest.count, held.count) == (27, 9)
    ids = lambda part: set(part._ids().tolist())
    assert ids(held) == ids(split.holdout(0.25, seed=1)[1]) != ids(split.holdout(0.25, seed=2)[1])
    assert not ids(rest) & ids(held) and ids(rest) | ids(held) == set(range(36))
    assert len(held.arrays()[0]) == 9 and len(held.shard(2, 1).arrays()[0]) == held.shard(2, 1).count
    order = lambda ds: [x.tobytes() for x, _ in ds.as_numpy_iterator()]
    ds = split.dataset(shuffle=True, seed=3, shuffle_buffer=8)
    first = order(ds)
    assert first != order(ds) and first == order(split.dataset(shuffle=True, seed=3, shuffle_buffer=8))
    x, y = split.arrays(limit=5, seed=1)
    assert len(x) == 5 and np.array_equal(x, split.arrays(limit=5, seed=1)[0])


def rewrite_shard(out, split, k, records):
    """Replaces shard `k` of `split` with `records` (serialized examples) and updates the index
    to match, as if it had been packed so."""
    index = json.load(open(os.path.join(out, "index.json")))
    entry = index["splits"][split]
    shard = entry["shards"][k]
    path = os.path.join(out, shard["file"])
    with tf.io.TFRecordWriter(path) as writer:
        for record in records:
            writer.write(record)
    entry["count"] += len(records) - shard["records"]
    shard.update(records=len(records), bytes=os.path.getsize(path),
                 sha256=hashlib.sha256(open(path, "rb").read()).hexdigest())
    json.dump(index, open(os.path.join(out, "index.json"), "w"))
    return path


@pytest.mark.parametrize("pixels, label, message", [
    (b"\0" * 7, 0, "expected 240 bytes of pixels \\(8x10x3, as index.json says\\), found 7"),
    (b"\0" * 240, 2, "expected the label to be a class id from 0 to 1, found 2"),
])
def test_a_bad_record_is_named_by_shard_and_index(packed, tmp_path, pixels, label, message):
    from zoo.data.records import _example

    out = copy_of(packed, tmp_path)
    good = np.zeros((8, 10, 3), np.uint8)
    bad = tf.train.Example.FromString(_example(good, 0))
    bad.features.feature["image"].bytes_list.value[0] = pixels
    bad.features.feature["label"].int64_list.value[0] = label
    path = rewrite_shard(out, "test", 0, [_example(good, 0), bad.SerializeToString()])
    split = data.open_split(out, "test")
    with pytest.raises(data.DatasetError, match=f"^{path}:1: {message}$"):
        with data.naming_bad_files(split):
            list(split.dataset())


def test_a_miscounted_shard_is_named(packed, tmp_path):
    from zoo.data.records import _example

    out = copy_of(packed, tmp_path)
    path = rewrite_shard(out, "test", 0, [_example(np.zeros((8, 10, 3), np.uint8), 1)] * 3)
    index = json.load(open(os.path.join(out, "index.json")))
    index["splits"]["test"]["shards"][0]["records"] += 1  # the index claims a record the shard lacks
    index["splits"]["test"]["count"] += 1
    json.dump(index, open(os.path.join(out, "index.json"), "w"))
    split = data.open_split(out, "test")
    with pytest.raises(data.DatasetError, match=f"^{path}: holds 3 records, but index.json says 4"):
        split.arrays()


def test_pack_arrays_with_factor_labels_and_unlabelled_folders(tmp_path):
    rng = np.random.default_rng(0)
    npz = str(tmp_path / "factors.npz")
    np.savez(npz, x=rng.integers(0, 256, (30, 6, 6), dtype=np.uint8), y=rng.integers(0, 4, (30, 3)))
    data.pack(npz, str(tmp_path / "f"), shards=2)
    for split in data.SPLITS:
        source, stored = data.open_split(npz, split), data.open_split(str(tmp_path / "f"), split)
        assert stored.labels == "factors" and stored.class_names is None and stored.image_shape == (6, 6, 1)
        for a, b in zip(canonical(*source.arrays()), canonical(*stored.arrays())):
            np.testing.assert_array_equal(a, b)
    for i in range(10):
        write_image(str(tmp_path / "flat" / f"{i}.png"), rng.integers(0, 256, (5, 5, 3), dtype=np.uint8))
    index = data.pack(str(tmp_path / "flat"), str(tmp_path / "u"), shards=3, image_size=5, channels=1)
    assert index["labels"] is None and index["image_shape"] == [5, 5, 1]
    x, y = data.open_split(str(tmp_path / "u"), "train").arrays()
    assert len(x) == 9 and (y == -1).all()


def test_pack_refuses_to_overwrite_and_bad_input_exits_2_with_one_line(folder, packed, tmp_path, capsys):
    before = open(os.path.join(packed, "index.json")).read()
    assert main(["pack", folder, packed]) == 2
    assert capsys.readouterr().err.splitlines() == [f"error: {packed}: exists and is not empty; pass --overwrite "
                                                    "to replace it."]
    assert open(os.path.join(packed, "index.json")).read() == before
    assert main(["pack", str(tmp_path / "missing"), str(tmp_path / "out")]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 1 and not os.path.exists(tmp_path / "out")
    bad = tmp_path / "bad"
    for i in range(10):
        write_image(str(bad / "train" / "a" / f"{i}.png"), np.zeros((4, 4, 3)))
    write_image(str(bad / "test" / "a" / "0.png"), np.zeros((4, 4, 3)))
    culprit = bad / "train" / "a" / "1.png"
    culprit.write_bytes(b"not an image")
    assert main(["pack", str(bad), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and str(culprit) in err[0] and not os.path.exists(tmp_path / "out")
    assert main(["pack", str(bad), str(tmp_path / "out"), "--skip-bad-files", "--image-size", "4"]) == 0
    assert f"skipped {culprit}: not a readable image" in capsys.readouterr().out
    index = json.load(open(tmp_path / "out" / "index.json"))
    assert (index["splits"]["train"]["count"], index["splits"]["test"]["count"]) == (9, 1)
    assert index["splits"]["train"]["skipped"][0][0] == str(culprit)


def test_help_does_not_import_tensorflow():
    code = ("import sys\nfrom zoo.data.__main__ import main\ntry:\n    main(['pack', '--help'])\n"
            "except SystemExit:\n    pass\nassert 'tensorflow' not in sys.modules, 'imported TensorFlow'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "--shards" in result.stdout and "--image-size H[xW]" in result.stdout
