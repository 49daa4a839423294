"""Image folders as datasets: layout and labels, sizes, channels, alpha, bad files, splits."""

import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from zoo import data


def write_image(path, pixels, format=None):
    """Writes uint8 `pixels` ([h, w] grey or [h, w, c]) as an image file; PNG and JPEG with
    TensorFlow's encoders, other formats (and palette images, format="P") with PIL."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pixels = np.asarray(pixels, np.uint8)
    if format == "P":
        Image.fromarray(pixels).convert("P").save(path)
    elif format:
        Image.fromarray(pixels if pixels.ndim == 2 or pixels.shape[-1] > 1 else pixels[..., 0]).save(path, format)
    else:
        pixels = pixels[..., None] if pixels.ndim == 2 else pixels
        encode = tf.io.encode_jpeg if path.endswith(".jpg") else tf.io.encode_png
        tf.io.write_file(path, encode(pixels))
    return path


def solid(colour, h=12, w=12):
    return np.broadcast_to(np.asarray(colour, np.uint8), (h, w, len(colour))).copy()


COLOURS = {"zebra": (250, 10, 10), "ant": (10, 250, 10), "moth": (10, 10, 250)}


@pytest.fixture
def classes(tmp_path):
    """A folder of 3 classes, created out of order, of 10 solid images each in its class's colour,
    of mixed sizes and PNG / JPEG files."""
    for name, colour in COLOURS.items():
        for i in range(10):
            write_image(str(tmp_path / name / f"{i}.{'jpg' if i % 3 == 0 else 'png'}"), solid(colour, 10 + i, 14))
    return str(tmp_path)


def test_class_subfolders_are_sorted_labels_and_a_seeded_tenth_is_the_test_split(classes):
    train = data.open_split(classes, "train", image_size=8)
    test = data.open_split(classes, "test", image_size=8)
    assert train.class_names == test.class_names == ["ant", "moth", "zebra"]
    assert train.labels == "classes" and train.image_shape == (8, 8, 3)
    assert (train.count, test.count) == (27, 3)
    assert not set(train.files) & set(test.files)
    assert list(data.open_split(classes, "test", seed=0).files) == list(test.files)
    assert list(data.open_split(classes, "test", seed=1).files) != list(test.files)
    for split in (train, test):
        x, y = split.arrays()
        assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (split.count, 8, 8, 3)
        for image, label in zip(x, y):  # every image is its class's colour (JPEG within a few levels)
            colour = np.array(COLOURS[split.class_names[label]]) / 255
            np.testing.assert_allclose(image.reshape(-1, 3).mean(0), colour, atol=0.05)


def test_flat_folder_is_unlabelled(tmp_path):
    for i in range(10):
        write_image(str(tmp_path / f"{i}.png"), solid((i * 20, 0, 0)))
    write_image(str(tmp_path / "notes.txt"), solid((0, 0, 0)))  # not an image name: ignored
    split = data.open_split(str(tmp_path), "train")
    assert split.labels is None and split.class_names is None and split.image_shape == (64, 64, 3)
    x, y = split.arrays()
    assert split.count == len(x) == 9 and (y == -1).all()
    assert data.load(str(tmp_path), "test")[0].shape == (1, 64, 64, 3)


def test_train_and_test_subfolders_are_the_splits(tmp_path):
    for split, n in (("train", 4), ("test", 2)):
        for name in ("a", "b"):
            for i in range(n):
                write_image(str(tmp_path / split / name / f"{i}.png"), solid((0, 0, 0)))
    train, test = (data.open_split(str(tmp_path), s, image_size=4) for s in data.SPLITS)
    assert (train.count, test.count) == (8, 4) and train.class_names == test.class_names == ["a", "b"]
    assert all(os.sep + "test" + os.sep in f for f in test.files)
    write_image(str(tmp_path / "test" / "c" / "0.png"), solid((0, 0, 0)))
    with pytest.raises(data.DatasetError, match="class 'c' of the test split is not one of the training classes"):
        data.open_split(str(tmp_path), "test")


@pytest.mark.parametrize("layout, message", [
    ({"loose.png": None, "cats/0.png": None}, "loose.png: an image beside the class subfolders"),
    ({"notes.txt": None}, "no images"),
    ({"train/0.png": None, "dogs/0.png": None}, "expected only train/ and test/"),
])
def test_bad_layouts_say_what_to_do(tmp_path, layout, message):
    for name in layout:
        write_image(str(tmp_path / name), solid((0, 0, 0)))
    with pytest.raises(data.DatasetError, match=message):
        data.open_split(str(tmp_path), "train")


def test_crop_keeps_the_centre_and_pad_adds_white(tmp_path):
    # 20 high, 40 wide: red, green, blue bands of 10, 20 and 10 columns.
    image = np.concatenate([solid((255, 0, 0), 20, 10), solid((0, 255, 0), 20, 20), solid((0, 0, 255), 20, 10)], 1)
    write_image(str(tmp_path / "0.png"), image)
    crop = data.open_split(str(tmp_path), "train", image_size=10, fit="crop").dataset()
    pad = data.open_split(str(tmp_path), "train", image_size=(16, 16), fit="pad").dataset()
    np.testing.assert_array_equal(next(iter(crop))[0].numpy(), np.broadcast_to([0, 1, 0], (10, 10, 3)))
    padded = next(iter(pad))[0].numpy()
    np.testing.assert_array_equal(padded[:3], 1.0)  # rows 0-9 of 40 are white: 0-3 of 16
    np.testing.assert_array_equal(padded[-3:], 1.0)
    np.testing.assert_allclose(padded[8, 1], [1, 0, 0], atol=0.01)
    np.testing.assert_allclose(padded[8, 8], [0, 1, 0], atol=0.01)
    np.testing.assert_allclose(padded[8, 14], [0, 0, 1], atol=0.01)
    wide = next(iter(data.open_split(str(tmp_path), "train", image_size=(5, 20), fit="crop").dataset()))[0]
    np.testing.assert_allclose(wide.numpy()[2, [1, 10, 18]], [[1, 0, 0], [0, 1, 0], [0, 0, 1]], atol=0.01)


def test_channels_grey_and_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    grey = np.random.default_rng(1).integers(0, 256, (6, 6), dtype=np.uint8)
    write_image(str(tmp_path / "a" / "rgb.png"), rgb)
    write_image(str(tmp_path / "b" / "grey.png"), grey)
    x1, y1 = data.open_split(str(tmp_path), "train", image_size=6, channels=1).dataset().batch(2).get_single_element()
    x3, y3 = data.open_split(str(tmp_path), "train", image_size=6, channels=3).dataset().batch(2).get_single_element()
    assert x1.shape == (2, 6, 6, 1) and x3.shape == (2, 6, 6, 3)
    luma = np.round(rgb @ np.array([0.2989, 0.5870, 0.1140])) / 255
    np.testing.assert_allclose(x1[0, ..., 0], luma, atol=1 / 255 + 1e-6)
    np.testing.assert_allclose(x1[1, ..., 0], grey / 255, atol=1e-6)
    np.testing.assert_allclose(x3[0], rgb / 255, atol=1e-6)
    np.testing.assert_allclose(x3[1], np.repeat(grey[..., None], 3, -1) / 255, atol=1e-6)


def test_alpha_is_composited_on_white_and_every_mode_and_format_reads(tmp_path):
    rgba = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [0, 0, 0, 128], [0, 0, 255, 255]]], np.uint8)
    write_image(str(tmp_path / "0-rgba.png"), rgba)
    write_image(str(tmp_path / "1-grey-alpha.png"), np.array([[[0, 0], [0, 255], [100, 255], [0, 51]]], np.uint8))
    pixels = data.open_split(str(tmp_path), "train", image_size=(1, 4)).dataset().batch(2).get_single_element()[0]
    np.testing.assert_allclose(pixels[0, 0], [[1, 1, 1], [1, 0, 0], [0.5, 0.5, 0.5], [0, 0, 1]], atol=0.01)
    np.testing.assert_allclose(pixels[1, 0, :, 0], [1, 0, 100 / 255, 0.8], atol=0.01)
    rng = np.random.default_rng(0)
    mixed = tmp_path / "mixed"
    for i, (ext, fmt, shape) in enumerate([("png", None, (9, 7, 3)), ("jpg", None, (30, 20, 3)),
                                           ("bmp", "BMP", (5, 8, 3)), ("bmp", "BMP", (6, 6)),
                                           ("gif", "GIF", (10, 12, 3)), ("png", "P", (7, 7, 3)),
                                           ("png", None, (4, 9)), ("png", None, (12, 12, 4)),
                                           ("png", None, (8, 8, 2)), ("webp", "WEBP", (9, 9, 3))]):
        write_image(str(mixed / f"{i}.{ext}"), rng.integers(0, 256, shape, dtype=np.uint8), fmt)
    for channels in (1, 3):
        split = data.open_split(str(mixed), "train", image_size=8, channels=channels)
        x, _ = split.arrays()
        assert x.shape == (9, 8, 8, channels) and 0 <= x.min() and x.max() <= 1


@pytest.fixture
def with_corrupt(tmp_path):
    """Ten good PNGs and one truncated one, `bad.png`."""
    for i in range(10):
        write_image(str(tmp_path / "c" / f"{i}.png"), solid((i, i, i)))
    good = open(tmp_path / "c" / "0.png", "rb").read()
    (tmp_path / "c" / "bad.png").write_bytes(good[:40])
    return str(tmp_path), str(tmp_path / "c" / "bad.png")


def test_a_corrupt_file_stops_reading_with_its_name(with_corrupt):
    folder, bad = with_corrupt
    split = data.open_split(folder, "train", image_size=4)
    with pytest.raises(data.DatasetError, match=f"^{bad}: not a readable image .*skip_bad_files=True"):
        with data.naming_bad_files(split):
            for _ in split.dataset().batch(4):
                pass
    with pytest.raises(data.DatasetError, match=bad):
        split.arrays()
    assert [file for file, _ in split.find_bad_files()] == [bad]
    with pytest.raises(tf.errors.InvalidArgumentError):  # an error no file explains is raised as it was
        with data.naming_bad_files(data.open_split(folder, "test", image_size=4)):
            tf.debugging.assert_equal(1, 2)


def test_skip_bad_files_counts_and_names_them(with_corrupt):
    folder, bad = with_corrupt
    train = data.open_split(folder, "train", image_size=4, skip_bad_files=True)
    test = data.open_split(folder, "test", image_size=4, skip_bad_files=True)
    skipped = train.skipped + test.skipped
    assert len(skipped) == 1 and skipped[0][0] == bad and "not a readable image" in skipped[0][1]
    assert train.count + test.count == 10
    assert sum(len(x) for x, _ in train.dataset().batch(100)) == train.count


def test_holdout_shard_and_subsets_are_deterministic(classes):
    split = data.open_split(classes, "train", image_size=4)
    rest, held = split.holdout(0.25, seed=3)
    again = split.holdout(0.25, seed=3)[1]
    assert list(held.files) == list(again.files) and held.count == 7 and rest.count == 20
    assert set(rest.files) | set(held.files) == set(split.files) and not set(rest.files) & set(held.files)
    assert list(split.holdout(0.25, seed=4)[1].files) != list(held.files)
    a, b = split.shard(2, 0), split.shard(2, 1)
    assert not set(a.files) & set(b.files) and set(a.files) | set(b.files) == set(split.files)
    options = split.dataset(shard=(2, 1)).options().experimental_distribute.auto_shard_policy
    assert options == tf.data.experimental.AutoShardPolicy.OFF
    with pytest.raises(data.DatasetError, match="27 files for 28 workers"):
        split.dataset(shard=(28, 0))
    x, y = split.arrays(limit=5, seed=2)
    assert len(x) == 5 and np.array_equal(x, split.arrays(limit=5, seed=2)[0])


def test_shuffle_is_seeded_and_changes_each_epoch(classes, tmp_path):
    split = data.open_split(classes, "train", image_size=4)
    order = lambda ds: [tuple(np.round(x.numpy().ravel()[:3] * 255)) + (int(y),) for x, y in ds]
    ds = split.dataset(shuffle=True, seed=5)
    first, second = order(ds), order(ds)
    assert first != second and sorted(first) == sorted(second)
    assert order(split.dataset(shuffle=True, seed=5)) == first
    for cache in ("memory", str(tmp_path / "cache")):
        cached = data.open_split(classes, "train", image_size=4, cache=cache).dataset(shuffle=True, seed=5)
        a, b = order(cached), order(cached)
        assert sorted(a) == sorted(b) == sorted(first) and a != b
    assert any(name.startswith("cache.train-") for name in os.listdir(tmp_path))


def test_named_datasets_stream_as_arrays():
    x, y = data.load("digits", "train")
    split = data.open_split("digits", "train")
    assert split.class_names == [str(c) for c in range(10)] and split.count == len(x)
    streamed = list(split.dataset(shuffle=True, seed=3).batch(64).take(2).as_numpy_iterator())
    piped = list(data.pipeline(x, y, batch_size=64, shuffle=True, seed=3).take(2).as_numpy_iterator())
    for (a, b), (c, d) in zip(streamed, piped):  # the same order as the in-memory pipeline
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, d)
    rgb = data.open_split("digits", "test", image_size=16, channels=3)
    assert rgb.image_shape == (16, 16, 3) and rgb.arrays(limit=4)[0].shape == (4, 16, 16, 3)
    assert data.open_split("dsprites", "test").labels == "factors"


@pytest.mark.parametrize("options, message", [
    ({"channels": 2}, "channels 1 \\(grey\\) or 3"), ({"fit": "stretch"}, "fit"), ({"image_size": 0}, "image_size"),
    ({"image_size": (4, 4, 3)}, "image_size"), ({"cache": 1}, "cache"),
    ({"cache": "/no/such/folder/cache"}, "cache /no/such/folder/cache: its folder does not exist"),
])
def test_bad_options_are_refused(classes, options, message):
    with pytest.raises(data.DatasetError, match=message):
        data.open_split(classes, "train", **options)


def test_parse_image_size():
    assert data.parse_image_size("32") == (32, 32) and data.parse_image_size("48x64") == (48, 64)
    for text in ("0", "32x", "ax3", "1x2x3", "-4"):
        with pytest.raises(data.DatasetError, match="H or HxW"):
            data.parse_image_size(text)
