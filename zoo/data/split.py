"""`Split`: one streaming interface over in-memory arrays, image folders and packed TFRecords.

A split knows its size, image shape and classes without decoding an image; `dataset()` streams
its `(image, label)` pairs through tf.data, `arrays()` reads a seeded subset into numpy and
`holdout()` divides it by index. The subclasses (`ArraySplit` here, `folders.FolderSplit`,
`records.RecordSplit`) only say how to list, take and decode their images. TensorFlow is
imported when a split streams, not when it is opened.
"""

import contextlib
import os
import re

import numpy as np

from zoo.data.errors import DatasetError

FITS = ("crop", "pad")
SHUFFLE_BUFFER = 10_000  # images held by the shuffle of a cached or TFRecord stream
_BATCH = 256  # images per step when `arrays` reads a split


def parse_image_size(text):
    """`"H"` or `"HxW"` (as `--image-size` takes it) -> `(H, W)`; DatasetError when it is neither."""
    parts = str(text).lower().split("x")
    if len(parts) in (1, 2) and all(p.strip().isdigit() and int(p) > 0 for p in parts):
        return int(parts[0]), int(parts[-1])
    raise DatasetError(f"expected an image size H or HxW in pixels, such as 64 or 48x64, received {text!r}")


def image_size_of(image_size):
    """`None`, an int or `(H, W)` -> `None` or `(H, W)`; DatasetError for anything else."""
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else tuple(image_size)
    if len(size) != 2 or not all(isinstance(s, (int, np.integer)) and s > 0 for s in size):
        raise DatasetError(f"expected image_size to be a positive int or (height, width), received {image_size!r}")
    return int(size[0]), int(size[1])


def check_options(channels, fit):
    if channels not in (None, 1, 3):
        raise DatasetError(f"expected channels 1 (grey) or 3 (RGB), received {channels!r}")
    if fit not in FITS:
        raise DatasetError(f"expected fit to be one of {FITS}, received {fit!r}")


def holdout_indices(n, fraction, seed):
    """`(rest, held)`: a seeded permutation of range(n) cut so that `held` has round(fraction * n)
    indices, the same cut the training loop makes for its validation split."""
    if not 0 <= fraction < 1:
        raise DatasetError(f"expected a hold-out fraction in [0, 1), received {fraction}")
    order = np.random.default_rng(seed).permutation(n)
    cut = n - int(round(fraction * n))
    return order[:cut], order[cut:]


def fit_image(image, size, channels, fit):
    """One decoded image (float32 [h, w, c] in [0, 1], c of 1 to 4) as float32 [H, W, channels].

    Alpha (the 2nd channel of grey, the 4th of RGB) is composited on white; grey becomes RGB by
    repeating it, RGB becomes grey by its luma (ITU-R 601). With `fit="crop"` the largest centred
    box of the aspect ratio of `size` is kept; with `fit="pad"` white borders extend the image to
    that aspect ratio. Then it is resized to `size`: shrunk by area averaging, else bilinear
    (antialiased).
    """
    import tensorflow as tf

    def colour(have, alpha):  # `have` colour channels, then maybe alpha
        pixels = tf.ensure_shape(image[..., :have], [None, None, have])
        if alpha:
            pixels = pixels * image[..., have:] + (1.0 - image[..., have:])
        if have == channels:
            return pixels
        return tf.image.rgb_to_grayscale(pixels) if channels == 1 else tf.concat([pixels] * 3, axis=-1)

    branches = [lambda: colour(1, False), lambda: colour(1, True), lambda: colour(3, False), lambda: colour(3, True)]
    known = image.shape[-1]  # arrays' channels are known when traced; a decoded file's are not
    image = branches[known - 1]() if known else tf.switch_case(tf.shape(image)[-1] - 1, branches)
    image = tf.ensure_shape(image, [None, None, channels])
    (height, width), (h, w) = size, tf.unstack(tf.shape(image)[:2])
    # The height that width w needs for the target aspect ratio, and the width that height h needs.
    need_h = tf.maximum(1, tf.cast(tf.round(tf.cast(w, tf.float32) * height / width), tf.int32))
    need_w = tf.maximum(1, tf.cast(tf.round(tf.cast(h, tf.float32) * width / height), tf.int32))
    if fit == "crop":
        box_h, box_w = tf.minimum(h, need_h), tf.minimum(w, need_w)
        image = tf.image.crop_to_bounding_box(image, (h - box_h) // 2, (w - box_w) // 2, box_h, box_w)
    else:
        box_h, box_w = tf.maximum(h, need_h), tf.maximum(w, need_w)
        image = 1.0 - tf.image.pad_to_bounding_box(1.0 - image, (box_h - h) // 2, (box_w - w) // 2, box_h, box_w)
    box, size = tf.stack([box_h, box_w]), tf.constant([height, width])
    image = tf.cond(tf.reduce_all(box == size), lambda: image, lambda: tf.cond(
        tf.reduce_all(box >= size),  # shrinking: each pixel the mean of its area; else bilinear, antialiased
        lambda: tf.image.resize(image, (height, width), method="area"),
        lambda: tf.image.resize(image, (height, width), antialias=True)))
    return tf.ensure_shape(tf.clip_by_value(image, 0.0, 1.0), [height, width, channels])


def to_uint8(image):
    """float32 pixels in [0, 1] -> uint8, rounded: what caches and shuffle buffers hold (4x less)."""
    import tensorflow as tf

    return tf.cast(tf.round(image * 255.0), tf.uint8)


class Split:
    """The images of one split of a dataset, streamed.

    Attributes:
        name, split: the dataset as given, and "train" or "test".
        image_shape: `(H, W, C)` of every image the split yields.
        count: the number of images, known without decoding any.
        class_names: the class of each label id, or None (unlabelled, or factor labels).
        labels: "classes", "factors" or None (unlabelled: every label is -1).
        skipped: `(file, reason)` of each file left out by `skip_bad_files`.
    """

    def __init__(self, name, split, image_shape, class_names, labels, *, cache=None, skipped=()):
        if cache is not None and not isinstance(cache, str):
            raise DatasetError(f"expected cache to be None, 'memory' or a file path, received {cache!r}")
        if cache and cache != "memory" and not os.path.isdir(os.path.dirname(os.path.abspath(cache))):
            raise DatasetError(f"cache {cache}: its folder does not exist; create it, or cache in 'memory'.")
        self.name, self.split, self.image_shape = name, split, tuple(int(s) for s in image_shape)
        self.class_names, self.labels, self.cache, self.skipped = class_names, labels, cache, list(skipped)

    def __repr__(self):
        return (f"{type(self).__name__}({self.name!r}, {self.split!r}, {self.count} images of "
                f"{'x'.join(map(str, self.image_shape))}, labels={self.labels})")

    @property
    def count(self):
        raise NotImplementedError

    # What a subclass provides.
    def _pixels(self, seed):
        """An unbatched tf.data.Dataset of `(image, label)`: images as uint8 (or float32 in [0, 1]),
        labels int32; in the split's order, or shuffled with `seed` each epoch when `seed` is not
        None (cheaply, before decoding: file names, shard order)."""
        raise NotImplementedError

    def _take(self, indices):
        """The split of the images at `indices` (ints into range(count)), in that order where the
        source allows it."""
        raise NotImplementedError

    def _units(self):
        """What multi-worker sharding hands out, as `(noun, how many)`."""
        return "images", self.count

    def _shard(self, num_workers, index):
        return self._take(np.arange(index, self.count, num_workers))

    def _cache_key(self):
        """A digest of what the split reads: a cache file made for other images is never reused."""
        raise NotImplementedError

    _full_shuffle = True  # `_pixels(seed)` already shuffles the whole split (no buffer needed)

    def find_bad_files(self):
        """`(file, reason)` for each file of this split that cannot be read; empty when all can."""
        return []

    # The interface.
    def shard(self, num_workers, index):
        """Worker `index`'s part of the split under file-based sharding among `num_workers`:
        folders and arrays deal their files or images out in turn, packed records whole shards.
        DatasetError when there are fewer of them than workers."""
        if not (isinstance(num_workers, (int, np.integer)) and isinstance(index, (int, np.integer))
                and 0 <= index < num_workers):
            raise DatasetError(f"expected shard=(num_workers, index) with 0 <= index < num_workers, "
                               f"received {(num_workers, index)}")
        noun, units = self._units()
        if units < num_workers:
            raise DatasetError(f"{self.name} ({self.split} split): {units} {noun} for {num_workers} workers; "
                               f"every worker needs its own {noun}"
                               + (f": re-pack it with --shards {num_workers} or more" if noun == "shards" else ""))
        return self._shard(int(num_workers), int(index))

    def dataset(self, *, shuffle=False, seed=0, shuffle_buffer=SHUFFLE_BUFFER, shard=None):
        """The split as an unbatched tf.data.Dataset of `(image, label)`: float32 `[H, W, C]` in
        [0, 1] and int32 labels (a scalar class id, -1 when unlabelled, or a vector of factors).

        Decoding runs in parallel (AUTOTUNE) in a deterministic order; batch and prefetch it.
        With `shuffle`, the order changes every epoch and is the same for the same `seed`: folders
        and arrays shuffle their whole list before decoding; records shuffle their shard order,
        read 8 shards at a time and mix images in a buffer of `shuffle_buffer`, which also
        shuffles a cached split, after its cache. `shard=(num_workers, index)` reads only that
        worker's part (`shard()`) and turns tf.distribute's own auto-sharding off.
        """
        import tensorflow as tf

        part = self if shard is None else self.shard(*shard)
        full = part._full_shuffle and not part.cache
        ds = part._pixels(seed if shuffle and full else None)
        if part.cache == "memory":
            ds = ds.cache()
        elif part.cache:
            ds = ds.cache(f"{part.cache}.{part.split}-{part._cache_key()[:16]}")
        if shuffle and not full:
            ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if ds.element_spec[0].dtype == tf.uint8:  # divided as numpy divides: the pixels `load` gives
            ds = ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255.0, y), num_parallel_calls=tf.data.AUTOTUNE)
        if shard is not None:
            options = tf.data.Options()
            options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
            ds = ds.with_options(options)
        return ds

    def arrays(self, limit=None, seed=0):
        """`(x, y)` numpy arrays (float32 NHWC in [0, 1], int64 labels) of at most `limit` images: a
        seeded random subset, in the split's order, of which only those images are read."""
        count = self.count
        part = self
        if limit is not None and limit < count:
            part = self._take(np.sort(np.random.default_rng(seed).choice(count, int(limit), replace=False)))
        n = part.count
        x = np.empty((n, *self.image_shape), np.float32)
        y = None
        done = 0
        with naming_bad_files(part):
            for images, labels in part.dataset().batch(_BATCH).as_numpy_iterator():
                if y is None:
                    y = np.empty((n, *labels.shape[1:]), np.int64)
                stop = min(n, done + len(images))
                x[done:stop], y[done:stop] = images[:stop - done], labels[:stop - done]
                done += len(images)
        if done != n:  # a shorter or longer read than the split's count is never passed on
            raise DatasetError(f"{self.name} ({self.split} split): expected {n} images, read {done}.")
        return x, (np.empty((0,), np.int64) if y is None else y)

    def holdout(self, fraction, seed=0):
        """`(rest, held)`: two splits of this one, `held` a seeded round(fraction * count) of its
        images chosen by index (`holdout_indices`), the same for the same seed. For records the
        index is the record's position in the split's shards, so no image is decoded to choose."""
        rest, held = holdout_indices(self.count, fraction, seed)
        return self._take(rest), self._take(held)


class ArraySplit(Split):
    """A split held in memory as arrays (the named datasets, `.npz` and IDX files); `image_size`
    and `channels`, when they differ from the arrays', convert each image as it streams. It has
    no cache: it is in memory already."""

    def __init__(self, name, split, x, y, class_names, *, image_size=None, channels=None, fit="crop"):
        labels = "factors" if y.ndim == 2 else "classes"
        size, channels = image_size_of(image_size), channels
        check_options(channels, fit)
        self.x, self.y = x, y
        shape = (*(size or x.shape[1:3]), channels or x.shape[3])
        self._convert = None if shape == x.shape[1:] else (shape[:2], shape[2], fit)
        super().__init__(name, split, shape, class_names if labels == "classes" else None, labels)

    @property
    def count(self):
        return len(self.x)

    def _pixels(self, seed):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((self.x, self.y.astype(np.int32)))
        if seed is not None:  # as `zoo.data.pipeline` shuffles: the same order for the same seed
            ds = ds.shuffle(len(self.x), seed=seed, reshuffle_each_iteration=True)
        if self._convert:
            ds = ds.map(lambda x, y: (fit_image(x, *self._convert), y), num_parallel_calls=tf.data.AUTOTUNE)
        return ds

    def _take(self, indices):
        part = ArraySplit.__new__(ArraySplit)
        part.__dict__.update(self.__dict__, x=self.x[indices], y=self.y[indices], skipped=[])
        return part


# Assertions in the input graph that name the file start with this; `naming_bad_files` finds them.
ASSERT_PREFIX = "zoo.data: "
_ASSERTED = re.compile(r"assertion failed: \[" + re.escape(ASSERT_PREFIX) + r"(.*?)\]\s*(?:\n|$|\[\[)", re.S)
SKIP_HINT = "skip unreadable files with skip_bad_files=True (--skip-bad-files)"


@contextlib.contextmanager
def naming_bad_files(*splits):
    """Turns a TensorFlow error raised in the block while it reads `splits` into a DatasetError that
    names the file (or `shard:record`) at fault.

    Wrap `model.fit` (or any loop over `split.dataset()`) in it. TensorFlow's decoders do not say
    which file they failed on, so on such an error each split's `find_bad_files()` looks for the
    culprits (one decode pass, only on this error path); an error no file explains is raised as it
    was.
    """
    import tensorflow as tf

    try:
        yield
    except (tf.errors.InvalidArgumentError, tf.errors.DataLossError, tf.errors.NotFoundError,
            tf.errors.FailedPreconditionError) as err:  # what decoders, readers and checks raise
        found = _ASSERTED.search(err.message or "")
        if found:
            raise DatasetError(found.group(1).replace('\\"', '"')) from None
        bad = [item for split in splits for item in split.find_bad_files()]
        if not bad:
            raise
        more = f" (and {len(bad) - 1} more unreadable files)" if len(bad) > 1 else ""
        raise DatasetError(f"{bad[0][0]}: {bad[0][1]}{more}; fix or remove it, or {SKIP_HINT}") from None
