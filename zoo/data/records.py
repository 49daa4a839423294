"""Packed datasets: TFRecord shards of fixed-shape 8-bit pixels, with a JSON index.

`pack` writes each split as `{split}-00000-of-00008.tfrecord`, ... (as many shards as asked, at
most one per image) and, last, `index.json`: the image shape, the labels and class names, and per
split its count and, per shard, its record count, size and sha256. Each record is a
`tf.train.Example` with `image`, the H*W*C uint8 pixels row-major (read back with
`tf.io.decode_raw`: no image decoder at training time), and `label`, an int64 list: the class id,
-1 when unlabelled, or the factors. Images are written in a seeded random order, so that every
shard holds a mix of classes.

Opening a split checks the index and the sha256 of each of its shards, so a changed shard never
goes unnoticed (`python -m zoo.data verify DIR` checks every split without TensorFlow); as records
stream, each is checked against the index: its pixel count, and its label against the classes.
"""

import concurrent.futures
import itertools
import json
import os

import numpy as np

from zoo.data.errors import DatasetError
from zoo.data.split import ASSERT_PREFIX, Split, check_options, fit_image, image_size_of, to_uint8
from zoo.files import atomic_folder, sha256, write_json_atomic

FORMAT, VERSION = "vae-zoo-tfrecords", 1
INDEX = "index.json"
LABELS = ("classes", "factors", None)
REPACK = "re-pack it with `python -m zoo.data pack`"
_PARSE_BATCH = 256  # records parsed and checked together (one op for many is several times faster)


def is_packed(path):
    return os.path.isfile(os.path.join(path, INDEX))


def read_index(folder):
    """The index of the packed dataset `folder`, checked; DatasetError says what is wrong."""
    path = os.path.join(folder, INDEX)
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as err:
        raise DatasetError(f"{path}: not a readable index ({type(err).__name__}: {err}); {REPACK}.") from err
    problem = _index_problem(index)
    if problem:
        raise DatasetError(f"{path}: {problem}; {REPACK}.")
    return index


def _count(value, least=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def _index_problem(index):
    if not isinstance(index, dict) or index.get("format") != FORMAT or index.get("version") != VERSION:
        return f"not a {FORMAT} index of version {VERSION}"
    shape, labels, names = index.get("image_shape"), index.get("labels", "?"), index.get("class_names")
    if not (isinstance(shape, list) and len(shape) == 3 and all(_count(s, 1) for s in shape)):
        return f"image_shape is {shape!r}, expected [height, width, channels]"
    if labels not in LABELS:
        return f"labels is {labels!r}, expected one of {LABELS}"
    if (labels == "classes") != (isinstance(names, list) and all(isinstance(n, str) for n in names) and bool(names)):
        return f"class_names is {names!r} for labels {labels!r}: expected a list of names exactly for classes"
    size = index.get("label_size")
    if not _count(size, 1) or (labels != "factors" and size != 1):
        return f"label_size is {size!r}, expected 1 (or the number of factors)"
    splits = index.get("splits")
    if not isinstance(splits, dict):
        return "no splits"
    for name, entry in splits.items():
        shards = entry.get("shards") if isinstance(entry, dict) else None
        if not isinstance(shards, list) or not _count(entry.get("count")):
            return f"split {name!r} lacks its count or shards"
        for shard in shards:
            file = shard.get("file") if isinstance(shard, dict) else None
            if not (isinstance(file, str) and os.path.basename(file) == file and file not in ("", ".", "..")
                    and _count(shard.get("records")) and _count(shard.get("bytes"))
                    and isinstance(shard.get("sha256"), str) and len(shard["sha256"]) == 64):
                return f"split {name!r} has a malformed shard entry {shard!r}"
        if sum(s["records"] for s in shards) != entry["count"]:
            return f"split {name!r} counts {entry['count']} images but its shards hold {sum(s['records'] for s in shards)}"
    return None


def check_shards(folder, shards):
    """`(path, problem)` for each shard of `shards` (index entries) that is missing or differs from
    its size and sha256 in the index; hashes run in parallel threads."""
    def problem(shard):
        path = os.path.join(folder, shard["file"])
        if not os.path.isfile(path):
            return "missing"
        if os.path.getsize(path) != shard["bytes"]:
            return f"{os.path.getsize(path)} bytes, but index.json says {shard['bytes']}: changed since it was packed"
        if sha256(path) != shard["sha256"]:
            return "its sha256 differs from index.json: changed since it was packed"
        return None

    with concurrent.futures.ThreadPoolExecutor(min(8, os.cpu_count() or 1)) as pool:
        found = list(pool.map(problem, shards))
    return [(os.path.join(folder, s["file"]), p) for s, p in zip(shards, found) if p]


def verify(folder):
    """Checks every split of the packed dataset `folder`: the index, then each shard's size and
    sha256. Returns `(path, problem)` per bad shard; DatasetError for a bad index."""
    index = read_index(folder)
    return check_shards(folder, [s for entry in index["splits"].values() for s in entry["shards"]])


def open_records(path, split, *, image_size=None, channels=None, fit="crop", skip_bad_files=False, cache=None):
    """The `split` of the packed dataset `path` as a `RecordSplit`, its shards checked first.

    A shard that is missing or changed is a DatasetError naming it; with `skip_bad_files` it is
    left out whole and listed in `skipped`. `image_size` and `channels`, when they differ from the
    packed images', convert each image as it streams.
    """
    index = read_index(path)
    if split not in index["splits"]:
        raise DatasetError(f"{path}: no {split} split (it holds {', '.join(index['splits'])}); {REPACK}.")
    check_options(channels, fit)
    shards, offset = [], 0
    for shard in index["splits"][split]["shards"]:
        shards.append({**shard, "offset": offset})
        offset += shard["records"]
    bad = check_shards(path, shards)
    if bad and not skip_bad_files:
        more = f" (and {len(bad) - 1} more)" if len(bad) > 1 else ""
        raise DatasetError(f"{bad[0][0]}: {bad[0][1]}{more}; {REPACK}, or leave changed shards out with "
                           "skip_bad_files=True (--skip-bad-files).")
    left_out = {file for file, _ in bad}
    shards = [s for s in shards if os.path.join(path, s["file"]) not in left_out]
    stored = tuple(index["image_shape"])
    shape = (*(image_size_of(image_size) or stored[:2]), channels or stored[2])
    part = RecordSplit(path, split, index, shards, None, shape, fit, cache, bad)
    if not part.count:
        raise DatasetError(f"{path}: the {split} split has no images left to read; {REPACK}.")
    return part


class RecordSplit(Split):
    """A split of a packed dataset: its shards (and which of their records it holds, `mask`, over
    the split's record index), streamed and checked record by record."""

    _full_shuffle = False

    def __init__(self, name, split, index, shards, mask, shape, fit, cache=None, skipped=()):
        super().__init__(name, split, shape, index["class_names"], index["labels"], cache=cache, skipped=skipped)
        self.index, self.shards, self.mask, self.fit = index, shards, mask, fit
        self.stored = tuple(index["image_shape"])
        self._count = len(self._ids())

    def _ids(self):
        """The split-wide record index of each image of this part, in reading order."""
        ids = np.concatenate([np.arange(s["offset"], s["offset"] + s["records"]) for s in self.shards]
                             or [np.zeros(0, np.int64)])
        return ids if self.mask is None else ids[self.mask[ids]]

    @property
    def count(self):
        return self._count

    def _take(self, indices):
        mask = np.zeros(self.index["splits"][self.split]["count"], bool)
        mask[self._ids()[indices]] = True
        return RecordSplit(self.name, self.split, self.index, self.shards, mask, self.image_shape, self.fit,
                           self.cache)

    def _units(self):
        return "shards", len(self.shards)

    def _shard(self, num_workers, index):
        return RecordSplit(self.name, self.split, self.index, self.shards[index::num_workers], self.mask,
                           self.image_shape, self.fit, self.cache)

    def _cache_key(self):
        import hashlib

        digest = hashlib.sha256(repr((self.image_shape, self.fit, [s["sha256"] for s in self.shards])).encode())
        digest.update(b"" if self.mask is None else np.packbits(self.mask).tobytes())
        return digest.hexdigest()

    def find_bad_files(self):
        """The shards that changed since the split was opened (size or sha256), or whose record
        count differs from the index's."""
        import tensorflow as tf

        bad = check_shards(self.name, self.shards)
        for shard in self.shards:
            path = os.path.join(self.name, shard["file"])
            if path not in dict(bad):
                try:
                    found = int(tf.data.TFRecordDataset(path).reduce(np.int64(0), lambda n, _: n + 1))
                except tf.errors.OpError as err:
                    bad.append((path, f"unreadable ({err.message.splitlines()[0]})"))
                    continue
                if found != shard["records"]:
                    bad.append((path, f"holds {found} records, but index.json says {shard['records']}"))
        return bad

    def _pixels(self, seed):
        import tensorflow as tf

        files = [os.path.join(self.name, s["file"]) for s in self.shards]
        ds = tf.data.Dataset.from_tensor_slices((files, np.array([s["offset"] for s in self.shards], np.int64),
                                                 np.array([s["records"] for s in self.shards], np.int64)))
        if seed is not None:
            ds = ds.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        mask = None if self.mask is None else tf.constant(self.mask)

        def read(file, offset, records):
            # A shard with more or fewer records than the index says stops the stream with an error.
            shard = tf.data.TFRecordDataset(file).apply(tf.data.experimental.assert_cardinality(records))
            shard = shard.enumerate()
            if mask is not None:
                shard = shard.filter(lambda i, _: tf.gather(mask, offset + i))
            return shard.batch(_PARSE_BATCH).map(lambda i, batch: (file, i, batch))

        ds = ds.interleave(read, cycle_length=min(8, len(files)), num_parallel_calls=tf.data.AUTOTUNE,
                           deterministic=True)
        ds = ds.map(self._parse, num_parallel_calls=tf.data.AUTOTUNE).unbatch()
        if self.image_shape != self.stored:
            size, channels = self.image_shape[:2], self.image_shape[2]
            ds = ds.map(lambda x, y: (to_uint8(fit_image(tf.image.convert_image_dtype(x, tf.float32), size,
                                                         channels, self.fit)), y),
                        num_parallel_calls=tf.data.AUTOTUNE)
        return ds

    def _parse(self, file, i, records):
        """Up to `_PARSE_BATCH` records of the shard `file` at its indices `i`, checked against
        the index, as uint8 images and int32 labels; an assertion names the first bad record."""
        import tensorflow as tf

        example = tf.io.parse_example(records, {"image": tf.io.FixedLenFeature([], tf.string),
                                                "label": tf.io.RaggedFeature(tf.int64)})
        pixels, labels = example["image"], example["label"]
        h, w, c = self.stored
        size = self.index["label_size"]
        if self.labels == "classes":
            ok, expected = (labels >= 0) & (labels < len(self.class_names)), \
                f"a class id from 0 to {len(self.class_names) - 1}"
        elif self.labels == "factors":
            ok, expected = labels >= 0, f"{size} factors >= 0"
        else:
            ok, expected = labels == -1, "-1 (unlabelled)"
        ok = tf.reduce_all(ok, axis=1) & tf.equal(labels.row_lengths(), size)

        def check(good, what, found):
            first = tf.argmin(tf.cast(good, tf.int32))
            return tf.debugging.Assert(tf.reduce_all(good), [tf.strings.join([
                ASSERT_PREFIX, file, ":", tf.strings.as_string(tf.gather(i, first)), ": ", what,
                tf.gather(found, first)])])

        lengths = tf.strings.length(pixels)
        checks = [check(tf.equal(lengths, h * w * c),
                        f"expected {h * w * c} bytes of pixels ({h}x{w}x{c}, as index.json says), found ",
                        tf.strings.as_string(lengths)),
                  check(ok, f"expected the label to be {expected}, found ",
                        tf.strings.reduce_join(tf.strings.as_string(labels), axis=1, separator=" "))]
        with tf.control_dependencies(checks):
            images = tf.reshape(tf.io.decode_raw(pixels, tf.uint8), [-1, h, w, c])
            labels = tf.cast(tf.reshape(labels.flat_values, [-1, size]), tf.int32)
        return images, (labels if self.labels == "factors" else labels[:, 0])


def pack(src, out_dir, *, shards=8, image_size=None, channels=None, fit="crop", seed=0, skip_bad_files=False,
         overwrite=False, progress=None):
    """Packs both splits of the dataset `src` (a name, an `.npz`, an image folder, ...) into
    TFRecord shards and an index at `out_dir` (see the module docstring); returns the index.

    `out_dir` is written as a hidden folder and renamed into place when complete; an existing
    non-empty `out_dir` is refused unless `overwrite`. `progress(split, done, total)` is called
    as images are written. Pixels are stored as 8 bits (float arrays are rounded to 1/255).
    """
    from zoo.data import SPLITS, open_split, naming_bad_files

    if not _count(shards, 1):
        raise DatasetError(f"expected a positive number of shards, received {shards!r}")
    if os.path.exists(out_dir) and not overwrite and (not os.path.isdir(out_dir) or os.listdir(out_dir)):
        raise DatasetError(f"{out_dir}: exists and is not empty; pass --overwrite to replace it.")
    parts = {split: open_split(src, split, image_size=image_size, channels=channels, fit=fit, seed=seed,
                               skip_bad_files=skip_bad_files) for split in SPLITS}
    first = parts["train"]
    if parts["test"].image_shape != first.image_shape:
        raise DatasetError(f"{src}: train images are {first.image_shape} but test images {parts['test'].image_shape}; "
                           "pass --image-size and --channels to make them one shape.")
    label_shape = first.dataset().element_spec[1].shape
    index = {"format": FORMAT, "version": VERSION, "source": str(src), "image_shape": list(first.image_shape),
             "labels": first.labels, "class_names": first.class_names,
             "label_size": int(label_shape[0]) if label_shape.rank else 1, "splits": {}}
    os.makedirs(os.path.dirname(os.path.abspath(out_dir)), exist_ok=True)
    with atomic_folder(out_dir) as staging:
        for split, part in parts.items():
            with naming_bad_files(part):
                entry = _write_split(part, staging, split, shards, seed, progress)
            index["splits"][split] = {**entry, "skipped": [list(item) for item in part.skipped]}
        write_json_atomic(os.path.join(staging, INDEX), index)
    return index


def _write_split(part, folder, split, shards, seed, progress):
    import tensorflow as tf

    n = part.count
    k = min(shards, n)
    bounds = np.linspace(0, n, k + 1).round().astype(int)
    shuffled = part._take(np.random.default_rng(seed).permutation(n))
    batches = shuffled.dataset().batch(256).prefetch(tf.data.AUTOTUNE).as_numpy_iterator()
    examples = (_example(image, label) for x, y in batches
                for image, label in zip(np.round(x * 255).astype(np.uint8), y))
    entries, done = [], 0
    if progress:
        progress(split, 0, n)
    for j in range(k):
        file = f"{split}-{j:05d}-of-{k:05d}.tfrecord"
        path = os.path.join(folder, file)
        with tf.io.TFRecordWriter(path) as writer:
            for record in itertools.islice(examples, bounds[j + 1] - bounds[j]):
                writer.write(record)
                done += 1
                if progress and (done % 1000 == 0 or done == n):
                    progress(split, done, n)
        entries.append({"file": file, "records": done - int(bounds[j]), "bytes": os.path.getsize(path),
                        "sha256": sha256(path)})
    if done != n or next(examples, None) is not None:
        raise DatasetError(f"{part.name} ({split} split): expected {n} images, read {done if done != n else 'more'}.")
    return {"count": n, "shards": entries}


def _example(image, label):
    import tensorflow as tf

    feature = {"image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.tobytes()])),
               "label": tf.train.Feature(int64_list=tf.train.Int64List(value=np.atleast_1d(label).tolist()))}
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
