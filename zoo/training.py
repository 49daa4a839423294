"""The one training loop of the zoo. Every recipe is a thin call to `main(variant, ...)`.

`train()` loads a dataset, holds out a validation split, fits with Keras (`fit` runs the model's
own `train_step`), restores the best validation weights, scores the test split and writes the run
directory of the design: `model.keras`, `saved_model/`, `history.csv`, TensorBoard `logs/` and,
last, `manifest.json`.
"""

import argparse
import os
import shlex
import sys
import time

import keras
import numpy as np

import zoo
from zoo import artifacts, data, evaluate

HISTORY = "history.csv"
BINARIZE = ("dynamic", "threshold", "none")


class Progress(keras.callbacks.Callback):
    """Prints one line per epoch with the losses and the training throughput (images/s)."""

    def __init__(self, num_images, epochs, print_fn=print):
        super().__init__()
        self.num_images, self.epochs, self.print_fn = num_images, epochs, print_fn
        self.throughput = []

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        self.train_seconds = None

    def on_test_begin(self, logs=None):  # validation starts: training of this epoch is over
        if self.train_seconds is None:
            self.train_seconds = time.perf_counter() - self.start

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.train_seconds or time.perf_counter() - self.start
        self.throughput.append(self.num_images / seconds)
        shown = "  ".join(f"{k} {v:.2f}" for k, v in (logs or {}).items() if "loss" in k or k in ("kl", "val_kl"))
        self.print_fn(f"epoch {epoch + 1}/{self.epochs}  {shown}  {self.throughput[-1]:.0f} img/s", flush=True)


def split_validation(x, y, fraction, seed):
    """A seeded random hold-out of `fraction` of the training images."""
    if not 0 <= fraction < 1:
        raise ValueError(f"Expected a validation fraction in [0, 1), received {fraction}.")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - int(round(fraction * len(x)))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def train(variant, *, out, dataset="mnist5k", epochs=30, batch_size=32, latent_dim=16, learning_rate=1e-3,
          seed=0, validation_split=0.1, patience=10, binarize="dynamic", nll_samples=500,
          command=None, print_fn=print, **model_options):
    """Trains `variant` on `dataset` and writes a finished run directory to `out`.

    Args:
        variant: a registered model name.
        out: the run directory.
        dataset: a name from `zoo.data.names()` or a dataset file path.
        validation_split: fraction of the training split held out; the best weights on it are kept.
        patience: epochs without validation improvement before training stops early.
        binarize: how Bernoulli models see grey images: "dynamic" samples binary pixels from the
            grey levels every epoch (a regulariser), "threshold" thresholds them at 0.5 (the
            mnist5k-bin protocol), "none" trains on the grey levels.
        nll_samples: importance samples per image for the test NLL (0 skips it).
        model_options: further constructor arguments of the model (e.g. `prior="mog"`).

    Returns:
        The manifest (a dict), as written to `out/manifest.json`.
    """
    keras.utils.set_random_seed(seed)
    cls = zoo.get_class(variant)
    (x, y), (x_test, y_test) = data.load(dataset, "train", seed=seed), data.load(dataset, "test", seed=seed)
    if cls.conditional:
        model_options["num_classes"] = data.num_classes(y)
    model = zoo.create(variant, input_shape=x.shape[1:], latent_dim=latent_dim, **model_options)
    (x_train, y_train), (x_val, y_val) = split_validation(x, y, validation_split, seed)

    if binarize not in BINARIZE:
        raise ValueError(f"Unknown binarize mode '{binarize}': expected one of {BINARIZE}.")
    if model.likelihood != "bernoulli":
        binarize = "none"
    if binarize == "threshold":
        x_train, x_val = data.binarize(x_train), data.binarize(x_val)
    labels = (lambda y: y) if cls.conditional else (lambda y: None)
    train_ds = data.pipeline(x_train, labels(y_train), batch_size=batch_size, shuffle=True, seed=seed,
                             dynamic_binarization=binarize == "dynamic")
    val_ds = data.pipeline(x_val, labels(y_val), batch_size=batch_size) if len(x_val) else None
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(steps, 1), alpha=0.05)
    model.compile(optimizer=keras.optimizers.Adam(schedule))

    artifacts.begin_run(out)
    progress = Progress(len(x_train), epochs, print_fn)
    callbacks = [progress, keras.callbacks.CSVLogger(os.path.join(out, HISTORY)),
                 keras.callbacks.TensorBoard(os.path.join(out, "logs"), write_graph=False)]
    if val_ds is not None:
        callbacks.append(keras.callbacks.EarlyStopping("val_loss", patience=patience, restore_best_weights=True))
    print_fn(f"training {variant} on {dataset}: {len(x_train)} train / {len(x_val)} validation images, "
             f"{model.count_params():,} parameters", flush=True)
    history = model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=callbacks,
                        shuffle=False, verbose=0)  # the pipeline shuffles

    metrics = {f"test_{k}": float(v) for k, v in
               model.evaluate(data.pipeline(x_test, labels(y_test), batch_size=batch_size),
                              return_dict=True, verbose=0).items()}
    metrics["epochs_trained"] = len(history.history["loss"])
    metrics["train_images_per_second"] = float(np.median(progress.throughput))
    if nll_samples and model.has_prior and model.likelihood == "bernoulli":
        x_bin = data.binarize(x_test)
        metrics[f"test_nll_bin_k{nll_samples}"] = float(np.mean(evaluate.negative_log_likelihood(
            evaluate.model_functions(model), x_bin, labels(y_test), k=nll_samples)))
    print_fn("test: " + "  ".join(f"{k} {v:.2f}" for k, v in metrics.items()), flush=True)

    artifacts.save_model(model, out)
    return artifacts.write_manifest(
        out, variant=variant, config=model.get_config(), metrics=metrics,
        dataset={"name": dataset, "train": len(x_train), "validation": len(x_val), "test": len(x_test),
                 "binarize": binarize},
        training={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                  "schedule": "cosine", "seed": seed, "validation_split": validation_split,
                  "patience": patience, "command": command})


def build_parser(variant, description, defaults=None, extra_options=()):
    """The recipe's command line.

    Args:
        defaults: flag defaults that differ for this recipe, by destination (e.g. `latent_dim=10`).
        extra_options: `(flag, argparse keyword arguments)` pairs for model flags; their values
            go to the model's constructor (e.g. `("--beta", {"type": float, "default": 4.0})`).
    """
    parser = argparse.ArgumentParser(description=description,
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--dataset", default="mnist5k",
                        help=f"one of {', '.join(data.names())}, or a .npz file / IDX folder")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="peak of the cosine schedule")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", variant), help="run directory to write")
    parser.add_argument("--validation-split", type=float, default=0.1)
    parser.add_argument("--patience", type=int, default=10, help="early-stopping patience in epochs")
    parser.add_argument("--binarize", choices=BINARIZE, default="dynamic",
                        help="Bernoulli models: sample binary pixels from grey levels each epoch (dynamic), "
                             "threshold them at 0.5, or train on grey levels (none)")
    parser.add_argument("--nll-samples", type=int, default=500,
                        help="importance samples per test image for the test NLL (0 skips it)")
    parser.add_argument("--prior", choices=("normal", "mog"), default="normal", help="prior p(z)")
    parser.add_argument("--width", type=int, default=64, help="filters of the first conv level")
    for flag, options in extra_options:
        parser.add_argument(flag, **options)
    parser.set_defaults(**(defaults or {}))
    return parser


def main(variant, description, argv=None, defaults=None, extra_options=()):
    """Runs a recipe: parse flags, train, write the run. Returns the process exit code."""
    parser = build_parser(variant, description, defaults, extra_options)
    args = vars(parser.parse_args(argv))
    command = " ".join(["python", shlex.quote(sys.argv[0])] + [shlex.quote(a) for a in
                                                                (sys.argv[1:] if argv is None else argv)])
    try:
        manifest = train(variant, command=command, **args)
    except (data.DatasetError, artifacts.RunError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {args['out']} ({len(manifest['artifacts'])} artifacts)")
    return 0
