"""A small convolutional classifier per dataset: the judge of samples.

Conditional accuracy asks whether a conditional model draws the class it was asked for, and the
sample-quality metrics compare what the classifier sees in samples and in test images, so both
need a model that reads images independently of the generator. The project trains one small
classifier per dataset on the dataset's training split, once, and caches it under
`$VAE_ZOO_CACHE` (default `~/.cache/vae-zoo`), keyed by the dataset's name and a digest of its
training images, so a changed dataset file never reuses a stale classifier.
"""

import hashlib
import json
import os
import re

import keras
import numpy as np

from zoo import data
from zoo.files import CACHE_ENV, atomic_write, cache_dir, write_json_atomic  # noqa: F401  (CACHE_ENV: API)

MAX_IMAGES = 20_000  # of each split, a seeded subset: enough to judge classes, and it fits in memory


def build(input_shape, num_classes):
    """Two conv blocks and a dense layer, with small random shifts as augmentation while training.

    Small on purpose: it has to read digits, not to win a benchmark; a few epochs on mnist5k reach
    about 97% test accuracy.
    """
    return keras.Sequential([
        keras.Input(input_shape),
        keras.layers.RandomTranslation(0.08, 0.08, fill_mode="constant"),
        keras.layers.Conv2D(32, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(num_classes),
    ], name="classifier")


def load_or_train(dataset, *, options=None, seed=0, epochs=15, print_fn=print):
    """Returns `(classifier, info)` for `dataset`, from the cache or freshly trained and cached.

    Args:
        dataset: a name or path that `zoo.data.open_split` accepts; it must have class labels.
        options: how its images are read (`open_split`'s `image_size`, `channels`, ...), as the
            model being judged read them; at most `MAX_IMAGES` of each split are used.
        seed: seed of the training run (and of dSprites-style generated data).
        epochs: training epochs when no cached classifier exists.

    Returns:
        The Keras classifier (logits out) and a dict with `test_accuracy`, `dataset`, `path`.

    Raises:
        ValueError: the dataset has no class labels, or its images are too small for two poolings.
    """
    read = lambda split: data.open_split(dataset, split, seed=seed, **(options or {})).arrays(MAX_IMAGES, seed=seed)
    x, y = read("train")
    classes = data.num_classes(y)
    if classes is None:
        raise ValueError(f"Dataset '{dataset}' has factor arrays, not class labels: it has no classifier.")
    if min(x.shape[1:3]) < 4:
        raise ValueError(f"Expected images of at least 4x4 pixels for the classifier, received {x.shape[1:3]}.")
    path = os.path.join(cache_dir(), f"classifier-{_key(dataset, x, y)}")
    if os.path.exists(path + ".keras") and os.path.exists(path + ".json"):
        with open(path + ".json") as f:
            return keras.saving.load_model(path + ".keras", safe_mode=True), json.load(f)

    print_fn(f"training the {dataset} classifier for conditional accuracy (cached in {cache_dir()})")
    keras.utils.set_random_seed(seed)
    model = build(x.shape[1:], classes)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    model.fit(x, y, batch_size=64, epochs=epochs, verbose=0)
    x_test, y_test = read("test")
    accuracy = float(np.mean(predict(model, x_test) == y_test))
    info = {"dataset": dataset, "test_accuracy": accuracy, "epochs": epochs, "path": path + ".keras"}
    os.makedirs(cache_dir(), exist_ok=True)
    atomic_write(path + ".keras", model.save)
    write_json_atomic(path + ".json", info)  # written last: the pair is complete
    return model, info


def predict(classifier, images, batch_size=256):
    """Most likely class id of each image, as an int array."""
    return np.argmax(classifier.predict(images, batch_size=batch_size, verbose=0), axis=-1)


def read(classifier, images, batch_size=256):
    """The classifier's view of `images`: `(features, probabilities)`, the activations of its last
    hidden layer `[N, 128]` (the feature space of the zoo's sample-quality Fréchet distance) and
    the softmax of its logits `[N, C]`."""
    hidden = classifier.layers[-2]  # the Dense(128) before the logits (`build`)
    both = keras.Model(classifier.inputs, [hidden.output, classifier.outputs[0]])
    features, logits = both.predict(images, batch_size=batch_size, verbose=0)
    return features, keras.ops.convert_to_numpy(keras.ops.softmax(logits, axis=-1))


def _key(dataset, x, y):
    digest = hashlib.sha256(x.tobytes() + y.astype(np.int64).tobytes()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(os.path.normpath(dataset)))
    return f"{name}-{digest}"
