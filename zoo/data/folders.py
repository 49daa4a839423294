"""A folder of images as a dataset, streamed and decoded by TensorFlow's own decoders.

Layout: class subfolders are labels (their sorted names give the ids 0..K-1; each may hold
images at any depth); a folder without subfolders is unlabelled. `train/` and `test/` subfolders,
when present, are the splits, each laid out the same way; without `test/`, a seeded
`TEST_FRACTION` (10%) of the images, chosen by index of the sorted file list, is the test split.
PNG, JPEG, BMP, GIF (first frame) and WebP files are read, by extension; other files are ignored.
Images of any size and mode are converted as they stream (`split.fit_image`): to `image_size`
(default 64x64) and `channels` (default 3).
"""

import hashlib
import os

import numpy as np

from zoo.data.errors import DatasetError
from zoo.data.files import TEST_FRACTION
from zoo.data.split import Split, check_options, fit_image, holdout_indices, image_size_of, to_uint8

EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
DEFAULT_SIZE, DEFAULT_CHANNELS = (64, 64), 3


def _subfolders(path):
    return sorted(e.name for e in os.scandir(path) if e.is_dir() and not e.name.startswith("."))


def _images(path, recursive):
    """The image files under `path` (recursively or not), sorted, hidden files and folders left out."""
    found = []
    for folder, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".")) if recursive else []
        found += [os.path.join(folder, n) for n in sorted(names)
                  if not n.startswith(".") and n.lower().endswith(EXTENSIONS)]
    return found


def _list(root, class_names, what):
    """`(files, labels)` of a split's folder `root`, labelled by `class_names` (None: unlabelled)."""
    loose = _images(root, recursive=False)
    if class_names is None:
        if _subfolders(root):
            raise DatasetError(f"{root}: has subfolders but the training images have no class subfolders; "
                               "use class subfolders in both splits or in neither.")
        return loose, [-1] * len(loose)
    if loose:
        raise DatasetError(f"{loose[0]}: an image beside the class subfolders of {root}; move it into the folder "
                           "of its class (images outside class folders have no label).")
    files, labels = [], []
    for name in _subfolders(root):
        if name not in class_names:
            raise DatasetError(f"{os.path.join(root, name)}: class '{name}' of the {what} is not one of the training "
                               f"classes {class_names}.")
        found = _images(os.path.join(root, name), recursive=True)
        files += found
        labels += [class_names.index(name)] * len(found)
    return files, labels


def layout(path):
    """`(train_root, test_root or None, class_names or None)` of the image folder `path`."""
    subs = _subfolders(path)
    if "train" in subs or "test" in subs:
        if set(subs) != {"train", "test"} and subs != ["train"]:
            raise DatasetError(f"{path}: expected only train/ and test/ subfolders beside each other (the splits), "
                               f"found {subs}; put class folders inside train/ and test/.")
        train = os.path.join(path, "train")
        return train, (os.path.join(path, "test") if "test" in subs else None), (_subfolders(train) or None)
    return path, None, (subs or None)


def open_folder(path, split, *, image_size=None, channels=None, fit="crop", seed=0, skip_bad_files=False,
                cache=None):
    """The `split` of the image folder `path` as a `FolderSplit` (see the module docstring)."""
    size = image_size_of(image_size) or DEFAULT_SIZE
    channels = channels or DEFAULT_CHANNELS
    check_options(channels, fit)
    train, test, class_names = layout(path)
    root = test if split == "test" and test else train
    files, labels = _list(root, class_names, f"{split} split")
    if not files:
        raise DatasetError(f"{root}: no images ({', '.join(e[1:] for e in EXTENSIONS)} files) found.")
    part = FolderSplit(path, split, files, labels, class_names, size, channels, fit, cache)
    if test is None:
        rest, held = holdout_indices(len(files), TEST_FRACTION, seed)
        if split == "test" and not len(held):
            raise DatasetError(f"{path}: {len(files)} images are too few to hold out {TEST_FRACTION:.0%} as the test "
                               "split; add images, or a test/ folder beside a train/ folder.")
        part = part._take(np.sort(held if split == "test" else rest))
    if skip_bad_files:
        skipped = part.find_bad_files()
        bad = {file for file, _ in skipped}
        part = part._take(np.flatnonzero([file not in bad for file in part.files]))
        part.skipped = skipped
        if not part.count:
            raise DatasetError(f"{root}: none of the {len(bad)} images of the {split} split can be read.")
    return part


def _decode(path):
    """The image file at `path`: float32 [h, w, c] in [0, 1], c of 1 to 4 as stored."""
    import tensorflow as tf

    image = tf.io.decode_image(tf.io.read_file(path), channels=0, expand_animations=False)  # uint8 (16-bit PNGs too)
    return tf.image.convert_image_dtype(image, tf.float32)


class FolderSplit(Split):
    """A split of an image folder: the file list in memory, the pixels streamed."""

    def __init__(self, name, split, files, ids, class_names, size, channels, fit, cache=None, skipped=()):
        super().__init__(name, split, (*size, channels), class_names, "classes" if class_names else None,
                         cache=cache, skipped=skipped)
        self.files, self.ids = np.asarray(files, dtype=object), np.asarray(ids, np.int32)
        self.fit = fit

    @property
    def count(self):
        return len(self.files)

    def _pixels(self, seed):
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((self.files.astype(str), self.ids))
        if seed is not None:
            ds = ds.shuffle(len(self.files), seed=seed, reshuffle_each_iteration=True)
        size, channels = self.image_shape[:2], self.image_shape[2]
        return ds.map(lambda path, label: (to_uint8(fit_image(_decode(path), size, channels, self.fit)), label),
                      num_parallel_calls=tf.data.AUTOTUNE)

    def _take(self, indices):
        return FolderSplit(self.name, self.split, self.files[indices], self.ids[indices], self.class_names,
                           self.image_shape[:2], self.image_shape[2], self.fit, self.cache)

    def _units(self):
        return "files", self.count

    def _cache_key(self):
        digest = hashlib.sha256(repr((self.image_shape, self.fit)).encode())
        for file, label in zip(self.files, self.ids):
            stat = os.stat(file)
            digest.update(f"{file}\0{label}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
        return digest.hexdigest()

    def find_bad_files(self):
        """One parallel decode pass: the files that do not come through it, each with the error
        TensorFlow gives when it decodes that file alone."""
        import tensorflow as tf

        ds = tf.data.Dataset.from_tensor_slices((np.arange(self.count), self.files.astype(str)))
        ds = ds.map(lambda i, path: (i, tf.shape(_decode(path))), num_parallel_calls=tf.data.AUTOTUNE)
        read = np.zeros(self.count, bool)
        for i, _ in ds.ignore_errors(log_warning=False).batch(1024).as_numpy_iterator():
            read[i] = True
        bad = []
        for file in self.files[~read]:
            try:
                _decode(file)
                reason = "could not be read while streaming; it reads now (was it being written?)"
            except (tf.errors.OpError, ValueError) as err:
                reason = _reason(err)
            bad.append((str(file), f"not a readable image ({reason})"))
        return bad


def _reason(err):
    """TensorFlow's error message without its op names and graph locations: its first sentence."""
    text = getattr(err, "message", None) or str(err)
    text = text.split("}}")[-1].split(" [Op:")[0].strip().splitlines()
    return (text[0] if text else type(err).__name__).rstrip(".")

