"""The one training loop of the zoo. Every recipe is a thin call to
`zoo.cli.main(variant, ...)`, which parses its flags and calls `run`.

`train()` loads and validates a dataset, holds out a validation split, builds the model under a
tf.distribute strategy, resumes from `OUT/checkpoints` when a run of the same command was cut
short, fits with Keras (`fit` runs the model's own `train_step`), restores the best validation
weights, scores the test split and writes the run directory of the design: `model.keras`,
`saved_model/`, `history.csv` (one row per epoch), TensorBoard `logs/`, `metrics.json`,
`pictures/` and, last, once the checkpoints are deleted, `manifest.json`: a finished run has
nothing to resume, and a run killed before its manifest is unfinished, whatever else it holds.

`run()` holds the run's lock, refuses to train over a finished run unless asked to (and then
keeps the old one whole until the new one is finished), and turns failures into exit codes: 0 a
finished run, 1 training diverged (NaN or Inf loss), 2 bad arguments or files, a full disk or a
run in use (one line on stderr, no traceback), 130 interrupted by Ctrl-C with the state saved
(rerun the same command to resume).
"""

import contextlib
import errno
import os
import shutil
import sys

import keras
import numpy as np
import tensorflow as tf

import zoo
from zoo import artifacts, callbacks, data, distribute, evaluate, likelihoods
from zoo.cli import BINARIZE

HISTORY = "history.csv"
CHECKPOINTS, LOGS = artifacts.WORKING_DIRS
PRIOR_STAGE = "prior"  # stage 2's checkpoints (OUT/checkpoints/prior) and history (prior_history.csv)
PRIOR_BATCH_SIZE = 64
PRIOR_SHIFT = 2  # pixels a translated copy of the training images moves at most (stage 2's augmentation)
WIDTHS = {"conv": 64, "resnet": 32}  # filters of the first level when --width is not given


def open_data(cls, dataset, *, seed=0, print_fn=print, **source):
    """The train and test splits of `dataset` as streamed `zoo.data.Split`s, checked for the model
    class `cls`.

    `zoo.data.open_split` checks shapes, pixel range and labels; here the splits must not be empty
    and, for conditional and supervised models, must have class labels (a folder needs class
    subfolders), at most `data.MAX_CLASSES` of them (two for supervised ones), the same in both
    splits. Files left out by `skip_bad_files`, and a test split held out of an `.npz` file, are
    said through `print_fn`.

    Args:
        source: `image_size`, `channels`, `fit`, `skip_bad_files`, `cache` of `open_split`.

    Returns:
        `train, test, class_names` (None for models that take no labels).
    """
    splits = {split: data.open_split(dataset, split, seed=seed, **source) for split in data.SPLITS}
    for split, part in splits.items():
        if not part.count:
            raise data.DatasetError(f"{dataset}: the {split} split has no images.")
        for file, reason in part.skipped:
            print_fn(f"skipped {file}: {reason}", flush=True)
        if part.skipped:
            print_fn(f"note: {len(part.skipped)} unreadable file(s) of the {split} split skipped (--skip-bad-files)",
                     flush=True)
    if data.lacks_test_split(dataset):
        print_fn(f"note: {dataset} has no test split: holding out {data.TEST_FRACTION:.0%} "
                 f"({splits['test'].count} images, seed {seed}) as the test split", flush=True)
    if not (cls.conditional or cls.supervised):
        return splits["train"], splits["test"], None
    train_split, test_split = splits["train"], splits["test"]
    if train_split.labels != "classes" or not train_split.class_names:
        if train_split.labels == "factors":
            per_image = train_split.dataset().element_spec[1].shape.as_list()
            found = f"labels of shape ({train_split.count}, {', '.join(map(str, per_image))})"
        else:
            found = "unlabelled images (a folder of images needs one subfolder per class)"
        raise data.DatasetError(f"{dataset}: {cls.variant} needs one class id per image, labels of shape "
                                f"({train_split.count},); received {found}.")
    if cls.supervised and len(train_split.class_names) != 2:
        raise data.DatasetError(f"{dataset}: {cls.variant} classifies two classes (0: the others, 1: the class to "
                                f"debias), received {len(train_split.class_names)}: {train_split.class_names[:10]}.")
    if len(train_split.class_names) > data.MAX_CLASSES:
        raise data.DatasetError(f"{dataset}: {len(train_split.class_names)} classes; a conditional model takes at "
                                f"most zoo.data.MAX_CLASSES = {data.MAX_CLASSES}.")
    if test_split.labels == "classes" and test_split.class_names != train_split.class_names:
        raise data.DatasetError(f"{dataset}: the test split's classes {test_split.class_names} differ from the "
                                f"train split's {train_split.class_names}.")
    return train_split, test_split, list(train_split.class_names)


def batches(split, batch_size, *, labelled, shuffle=False, seed=0, binarize="none", shard=None):
    """`split` as the batches `fit` takes: images (and labels for models that take them), binarized
    as `binarize` says ("dynamic": a Bernoulli draw of every pixel each epoch; "threshold": at
    0.5). With `shard`, this worker's part, repeated, in batches of its share of `batch_size`: the
    caller gives the steps."""
    ds = split.dataset(shuffle=shuffle, seed=seed, shard=shard)
    if not labelled:
        ds = ds.map(lambda x, y: x)
    if shard is not None:  # each worker batches its own part: its share of the global batch
        ds, batch_size = ds.repeat(), max(1, batch_size // shard[0])
    ds = ds.batch(batch_size)
    if binarize != "none":
        ds = ds.map(lambda x, *y: (binary(x, binarize), *y) if y else binary(x, binarize),
                    num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def binary(x, binarize):
    """Images `x` as `batches` gives them for `binarize` ("dynamic": a Bernoulli draw of every
    pixel; "threshold": at 0.5; "none": as they are)."""
    if binarize == "none":
        return x
    level = tf.random.uniform(tf.shape(x)) if binarize == "dynamic" else 0.5
    return tf.cast(level < x, tf.float32)


def resampled_batches(split, batch_size, *, steps, seed, binarize="none"):
    """`split`, held in memory, as the batches of training steps `steps` (a range): each draws
    `batch_size` images and labels with replacement from the probabilities whose logarithms the
    returned variable holds (uniform until `callbacks.Resample` sets them), with a seed of its
    own, so a resumed run draws what it would have. Nothing is drawn ahead: a step's draw reads
    the probabilities as they are when `fit` asks for it.

    Returns:
        `(dataset, log_probabilities, (x, y))`.
    """
    x, y = split.arrays()
    images, labels = tf.constant(x), tf.constant(y.astype(np.int32))
    log_probabilities = tf.Variable(tf.fill([len(x)], -float(np.log(len(x)))), trainable=False)

    def draw(step):
        index = tf.random.stateless_categorical(log_probabilities[None], batch_size, tf.stack([seed, step]))[0]
        return binary(tf.gather(images, index), binarize), tf.gather(labels, index)

    options = tf.data.Options()
    options.experimental_optimization.inject_prefetch = False  # a prefetched draw would miss an update
    ds = tf.data.Dataset.range(steps.start, steps.stop).map(draw).with_options(options)
    return ds, log_probabilities, (x, y)


def build_model(variant, strategy=None, *, learning_rate=1e-3, steps=1, clip_norm=None, mixed_precision=False,
                **options):
    """Creates `variant` and compiles it with Adam, under `strategy`'s scope.

    The models create their weights in `__init__`, so creation, not only `compile`, happens in the
    scope for the variables to be mirrored. The learning rate decays from `learning_rate` along a
    cosine to 5% of it over `steps` steps. Keras clips each replica's gradient before it sums the
    replicas' gradients, so each replica gets `clip_norm / replicas`: the summed gradient's norm is
    then at most `clip_norm`, and the clip is a one-device clip when the replicas agree.

    Under `mixed_precision` the networks compute in float16, except their last layers, and Keras'
    `LossScaleOptimizer` scales the loss; the model itself stays float32, so its inputs, its
    distributions and its saved configuration are float32.
    """
    strategy = strategy or tf.distribute.get_strategy()
    clip = clip_norm / strategy.num_replicas_in_sync if clip_norm else None
    with strategy.scope(), distribute.dtype_policy("mixed_float16" if mixed_precision else "float32"):
        model = zoo.create(variant, dtype="float32", **options)  # its networks take the global policy
        optimizer = keras.optimizers.Adam(
            keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(steps, 1), alpha=0.05),
            global_clipnorm=clip)
        if mixed_precision:
            distribute.float32_outputs(model)
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        model.compile(optimizer=optimizer)
    distribute.patch_multiworker_logs(model, strategy)
    return model


def train(variant, *, out, dataset="mnist5k", epochs=30, batch_size=32, latent_dim=16, learning_rate=1e-3,
          seed=0, validation_split=0.1, patience=10, binarize="dynamic", nll_samples=100, strategy=None,
          mixed_precision=False, clip_norm=None, checkpoint_every=0, resume_from=None, command=None,
          image_size=None, channels=None, fit="crop", skip_bad_files=False, cache=None, print_fn=print,
          **model_options):
    """Trains `variant` on `dataset` and writes a finished run directory to `out`.

    Rerunning a run that was killed, interrupted or diverged resumes it from the state in
    `out/checkpoints` (see `callbacks.Checkpoint`), as long as the model, data, batch size,
    epochs and seed are the same; the learning rate and clipping may change.

    Args:
        variant: a registered model name.
        out: the run directory.
        dataset: a name from `zoo.data.names()`, an `.npz` file or IDX folder, a folder of images
            or a packed folder of TFRecords (see `zoo.data.open_split`); folders and records stream.
        batch_size: the global batch, split across the replicas of `strategy`.
        validation_split: fraction of the training images held out; the best weights on it are kept.
        patience: epochs without validation improvement before training stops early.
        binarize: how Bernoulli models see grey images: "dynamic" samples binary pixels from the
            grey levels every epoch (a regulariser), "threshold" thresholds them at 0.5 (the
            mnist5k-bin protocol), "none" trains on the grey levels.
        nll_samples: importance samples per image for the test NLL (0 skips it).
        strategy: a `tf.distribute.Strategy` (see `zoo.distribute.make_strategy`), or None for the
            default one-device strategy.
        mixed_precision: float16 compute with loss scaling, for GPUs; the saved model is float32.
        clip_norm: clip the gradient to this global norm (None: no clipping).
        checkpoint_every: also save the state every this many steps (0: at epoch ends only).
        resume_from: the checkpoint folder to resume from (default `out/checkpoints`; other
            multi-worker workers read the chief's).
        image_size, channels, fit, skip_bad_files, cache: how images are read (`zoo.data.open_split`).
        model_options: further constructor arguments of the model (e.g. `prior="mog"`).

    Returns:
        The manifest (a dict), as written to `out/manifest.json`.

    Raises:
        DatasetError, RunError, ValueError: bad data or settings, or checkpoints of another run.
        callbacks.Diverged: the loss became NaN or Inf (the last good state stays in the checkpoints).
        callbacks.Interrupted: Ctrl-C; the state was saved.
    """
    strategy = strategy or tf.distribute.get_strategy()
    replicas = strategy.num_replicas_in_sync
    if binarize not in BINARIZE:
        raise ValueError(f"Unknown binarize mode '{binarize}': expected one of {BINARIZE}.")
    if batch_size < replicas:
        raise ValueError(f"The batch size {batch_size} is the global batch, split across {replicas} replicas: "
                         f"expected at least {replicas}.")
    keras.utils.set_random_seed(seed)
    cls = zoo.get_class(variant)
    source = {"image_size": image_size, "channels": channels, "fit": fit, "skip_bad_files": skip_bad_files,
              "cache": cache}
    train_split, test_split, class_names = open_data(cls, dataset, seed=seed, print_fn=print_fn, **source)
    if class_names and cls.conditional:
        model_options["num_classes"] = len(class_names)
    train_part, val_part = train_split.holdout(validation_split, seed)
    if not train_part.count:
        raise ValueError(f"A validation split of {validation_split} leaves no training images out of "
                         f"{train_split.count}.")
    shard = distribute.worker_shard(strategy)
    if shard:  # file-based sharding: say what this worker reads
        mine = train_part.shard(*shard)
        files = [entry["file"] for entry in getattr(mine, "shards", [])]
        print_fn(f"worker {shard[1]} of {shard[0]} reads {mine.count} of the {train_part.count} training images"
                 + (f" from {', '.join(files)}" if files else ""), flush=True)
    steps_of = lambda split: int(np.ceil(split.count / batch_size))
    steps_per_epoch = steps_of(train_part)
    asked = model_options.pop("likelihood", "auto")
    likelihood, share = likelihoods.choose(train_part.arrays(limit=1000, seed=seed)[0], asked)
    colour = ", colour images" if train_split.image_shape[-1] > 1 else ""
    print_fn(f"likelihood: {likelihood} ({share:.0%} of the training pixels are within {likelihoods.NEAR_BINARY} "
             f"of 0 or 1{colour}{'' if asked == 'auto' else '; set by --likelihood'})", flush=True)
    model_options.update(choose_networks(train_split.image_shape, model_options, print_fn))
    if "dataset_size" in model_options and model_options["dataset_size"] is None:  # beta_tcvae's estimators' N
        model_options["dataset_size"] = train_part.count
    model = build_model(variant, strategy, learning_rate=learning_rate, steps=epochs * steps_per_epoch,
                        clip_norm=clip_norm, mixed_precision=mixed_precision, input_shape=train_split.image_shape,
                        latent_dim=latent_dim, likelihood=likelihood, **model_options)

    if model.likelihood != "bernoulli":
        binarize = "none"
    labelled = cls.conditional or cls.supervised
    stream = lambda split, **kw: batches(split, batch_size, labelled=labelled, shard=shard, **kw)
    val_ds = stream(val_part, binarize="threshold" if binarize == "threshold" else "none") if val_part.count else None
    steps = steps_of if shard else (lambda split: None)  # a sharded stream repeats: fit needs its steps
    resampling = getattr(model, "debias", False)  # dbvae: each epoch's draws follow its latent density
    if resampling and shard:
        raise ValueError(f"{variant} resamples its training images, which one process holds in memory: train it "
                         "with --strategy auto or mirrored, not multiworker.")

    progress = callbacks.Progress(train_part.count, epochs, print_fn, steps_per_epoch=steps_per_epoch,
                                  batch_size=batch_size)
    stopping = callbacks.ResumableEarlyStopping(patience) if val_ds is not None else None
    fingerprint = {"variant": variant, "dataset": dataset, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                   "validation_split": validation_split, "binarize": binarize, "mixed_precision": mixed_precision,
                   "images": {"shape": train_split.image_shape, "fit": fit, "skipped": len(train_split.skipped)},
                   "config": {k: v for k, v in model.get_config().items() if k not in ("name", "trainable")}}
    checkpoint = callbacks.Checkpoint(os.path.join(out, CHECKPOINTS), fingerprint, checkpoint_every,
                                      early_stopping=stopping, progress=progress)
    state = checkpoint.restore(model, resume_from)
    done = state["epoch"] if state else 0
    if resampling:
        train_ds, log_probabilities, (x_train, y_train) = resampled_batches(
            train_part, batch_size, steps=range(done * steps_per_epoch, epochs * steps_per_epoch), seed=seed,
            binarize=binarize)
        train_steps = steps_per_epoch
    else:
        train_ds, train_steps = stream(train_part, shuffle=True, seed=seed, binarize=binarize), steps(train_part)
    artifacts.begin_run(out)
    history_path = os.path.join(out, HISTORY)
    callbacks.truncate_history(history_path, done)
    interrupt = callbacks.StopOnInterrupt(checkpoint)
    fit_callbacks = [callbacks.StopOnNaN(checkpoint), progress, *([stopping] if stopping else []),
                     keras.callbacks.CSVLogger(history_path, append=True),
                     keras.callbacks.TensorBoard(os.path.join(out, LOGS), write_graph=False), checkpoint, interrupt]
    if resampling:
        fit_callbacks.insert(1, callbacks.Resample(x_train, y_train, log_probabilities))
    if state:
        print_fn(f"resuming from {resume_from or checkpoint.directory}: {done} of {epochs} epochs done"
                 + (" (stopped early)" if state["stopped"] else ""), flush=True)
    print_fn(f"training {variant} on {dataset}: {train_part.count} train / {val_part.count} validation images of "
             f"{'x'.join(map(str, train_split.image_shape))}"
             + (f", {len(class_names)} classes" if class_names else "") + ", "
             f"{model.count_params():,} parameters, {replicas} replica(s)", flush=True)
    with interrupt.installed(), data.naming_bad_files(train_part, val_part):
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=fit_callbacks, shuffle=False,
                  steps_per_epoch=train_steps, validation_steps=steps(val_part),
                  initial_epoch=epochs if state and state["stopped"] else done, verbose=0)  # the pipeline shuffles
    interrupt.raise_if_requested()
    prior_metrics = {}
    if getattr(model, "prior_network", None) is not None:  # stage 2: the prior over the trained encoder's codes
        seen = "threshold" if binarize == "threshold" else "none"  # the images as validation sees them
        prior_metrics = train_prior(model, [batches(part, batch_size, labelled=False, binarize=seen)
                                            for part in (train_part, val_part)],
                                    out=out, fingerprint=fingerprint, learning_rate=learning_rate, seed=seed,
                                    patience=patience, resume_from=resume_from, print_fn=print_fn)

    with data.naming_bad_files(test_split):
        scores = model.evaluate(stream(test_split), steps=steps(test_split), return_dict=True, verbose=0)
    metrics = {f"test_{k}": float(v) for k, v in scores.items()}
    metrics["epochs_trained"] = checkpoint.epoch
    metrics["train_images_per_second"] = float(np.median(progress.throughput))
    metrics.update(prior_metrics)
    print_fn("test: " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()),
             flush=True)

    saved = distribute.float32_copy(model) if mixed_precision else model
    artifacts.save_model(saved, out)
    fields = dict(
        variant=variant, config=saved.get_config(), metrics=metrics,
        dataset={"name": dataset, "train": train_part.count, "validation": val_part.count, "test": test_split.count,
                 "binarize": binarize, "image_shape": list(train_split.image_shape), "class_names": class_names,
                 **source_record(dataset, source, train_split, test_split)},
        training={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                  "schedule": "cosine", "seed": seed, "validation_split": validation_split,
                  "patience": patience, "strategy": distribute.strategy_name(strategy), "replicas": replicas,
                  "mixed_precision": mixed_precision, "clip_norm": clip_norm,
                  "resumed_at_epoch": done if state else None, "command": command})
    if distribute.is_chief(strategy):  # the other workers' runs are temporary
        _, sections = evaluate.write_evaluation(out, saved, fields, evaluate.evaluation_settings(nll_samples),
                                                print_fn=print_fn)
        artifacts.merge(fields, **sections)
    # Last: the manifest marks the run finished. The checkpoints go just before its rename, once it is
    # written: a full disk keeps them, and a kill between the two leaves an unfinished run that
    # trains again, never a finished one with state to resume.
    manifest = artifacts.write_manifest(
        out, before_commit=lambda: shutil.rmtree(checkpoint.directory, ignore_errors=True), **fields)
    return manifest


def train_prior(model, splits, *, out, fingerprint, learning_rate, seed, patience, resume_from=None, print_fn=print):
    """Stage 2, for a model with a prior network over its codes (the VQ-VAE's PixelCNN): fits
    `model.prior_network` on the codes `model.codes_of` gives for the `(train, validation)` image
    batches `splits`, for `model.prior_epochs` epochs, with its own Adam, early stopping on the
    validation codes' NLL, progress lines prefixed `prior`, `prior_history.csv`, and checkpoints
    of its own in `OUT/checkpoints/prior`: a kill here resumes here (stage 1's checkpoint already
    holds all its epochs, so it is not trained again).

    Returns:
        Metrics: `prior_epochs_trained`, the best `prior_val_nll` (nats per code grid; None
        without a validation split) and `prior_train_grids_per_second`.
    """
    network, epochs = model.prior_network, model.prior_epochs
    train, val = splits
    offsets = np.random.default_rng(seed).integers(-PRIOR_SHIFT, PRIOR_SHIFT + 1, (model.prior_shifts, 2))
    train_codes = np.concatenate([model.codes_of(train)] + [model.codes_of(translated(train, dy, dx))
                                                            for dy, dx in offsets.tolist()])
    val_codes = model.codes_of(val)
    pairs = lambda c: tf.data.Dataset.from_tensor_slices((c, c))  # codes in, the same codes as targets
    train_ds = pairs(train_codes).shuffle(max(len(train_codes), 1), seed=seed).batch(PRIOR_BATCH_SIZE)
    val_ds = pairs(val_codes).batch(PRIOR_BATCH_SIZE) if len(val_codes) else None
    steps = int(np.ceil(len(train_codes) / PRIOR_BATCH_SIZE))
    say = lambda line, **kw: print_fn(f"  prior {line[2:]}" if line.startswith("  ") else f"prior {line}", **kw)
    with model.distribute_strategy.scope():
        network.trainable = True
        network.compile(optimizer=keras.optimizers.Adam(keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=max(epochs * steps, 1), alpha=0.05)), loss=model.prior_loss)
    progress = callbacks.Progress(len(train_codes), epochs, say, steps_per_epoch=steps, batch_size=PRIOR_BATCH_SIZE)
    stopping = callbacks.ResumableEarlyStopping(patience) if len(val_codes) else None
    checkpoint = callbacks.Checkpoint(os.path.join(out, CHECKPOINTS, PRIOR_STAGE),
                                      {**fingerprint, "stage": PRIOR_STAGE, "batch_size": PRIOR_BATCH_SIZE},
                                      early_stopping=stopping, progress=progress)
    state = checkpoint.restore(network, resume_from and os.path.join(resume_from, PRIOR_STAGE))
    done = state["epoch"] if state else 0
    history = os.path.join(out, f"{PRIOR_STAGE}_{HISTORY}")
    callbacks.truncate_history(history, done)
    interrupt = callbacks.StopOnInterrupt(checkpoint)
    print_fn(f"resuming the prior from {checkpoint.directory}: {done} of {epochs} epochs done" if state else
             f"training the {network.name} prior on the codes of {len(train_codes)} train grids (the images and "
             f"{len(offsets)} translated copies) / {len(val_codes)} validation images, "
             f"{network.count_params():,} parameters", flush=True)
    fit_callbacks = [callbacks.StopOnNaN(checkpoint), progress, *([stopping] if stopping else []),
                     keras.callbacks.CSVLogger(history, append=True), checkpoint, interrupt]
    with interrupt.installed():
        network.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=fit_callbacks, shuffle=False,
                    initial_epoch=epochs if state and state["stopped"] else done, verbose=0)
    interrupt.raise_if_requested()
    network.trainable = False
    best = stopping.best if stopping is not None and np.isfinite(stopping.best) else None
    return {"prior_epochs_trained": checkpoint.epoch, "prior_val_nll": None if best is None else float(best),
            "prior_train_grids_per_second": float(np.median(progress.throughput)) if progress.throughput else None}


def translated(batches, dy, dx):
    """Image batches (a `tf.data.Dataset` of `[B, H, W, C]`) moved `dy` pixels down and `dx` right,
    the uncovered border filled with zeros (the background of mnist and dSprites)."""
    def move(x):
        pad = PRIOR_SHIFT
        h, w = x.shape[1], x.shape[2]
        return tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])[:, pad - dy:pad - dy + h, pad - dx:pad - dx + w]

    return batches.map(move)


def choose_networks(image_shape, options, print_fn=print):
    """The backbone and width where `options` leaves them to the data ("auto" or None): the
    residual backbone at width 32, which beat the conv backbone on OpenMoji and on mnist5k-bin (see
    the README's backbone measurements); images under 16 pixels get an MLP either way."""
    backbone = options.get("backbone", "auto")
    if backbone == "auto":
        backbone = "resnet"
    width = options.get("width") or WIDTHS[backbone]
    if min(image_shape[:2]) < 16:
        print_fn(f"networks: MLP of {options.get('hidden', 256)} units (images under 16 pixels)", flush=True)
    else:
        extra = f", depth {options.get('depth', 1)}, norm {options.get('norm', 'none')}" if backbone == "resnet" else ""
        print_fn(f"networks: {backbone} backbone, width {width}{extra}", flush=True)
    return {"backbone": backbone, "width": width}


def source_record(dataset, source, *splits):
    """What a manifest records of how the images were read, so that evaluation reads them again the
    same way: the `open_split` options, the files skipped, and a dataset's attribution."""
    record = {key: source[key] for key in ("image_size", "channels", "fit")}
    record["skipped"] = [f"{file}: {reason}" for split in splits for file, reason in split.skipped]
    if dataset in ("openmoji", "openmoji-persons-biased"):
        record["attribution"] = data.OPENMOJI_ATTRIBUTION
    return record


def run(variant, args, command=None):
    """Trains `variant` with the parsed recipe flags `args` (a dict, see `zoo.cli`) into
    `args["out"]`, holding the run's lock. Returns the process exit code (see the module).

    A finished `out` is refused unless `args["overwrite"]`; then the new run trains beside it, in
    `.NAME.overwrite` (where a rerun of the same command resumes it), and replaces it in one atomic
    rename once finished: until then the old run stays whole and loadable.
    """
    args = dict(args)
    out, overwrite = args["out"], args.pop("overwrite", False)
    resume = "rerun the same command to resume"
    try:
        strategy = distribute.make_strategy(args.pop("strategy"), args.pop("cpu_devices"))
        if args["mixed_precision"] and not tf.config.list_physical_devices("GPU"):
            print("note: --mixed-precision without a GPU computes float16 on the CPU, which is slow.", file=sys.stderr)
        chief = distribute.is_chief(strategy)
        with artifacts.locked(out) if chief else contextlib.nullcontext():
            target = artifacts.sibling(out, "overwrite") if overwrite and os.path.exists(out) else out
            if target == out and artifacts.is_finished(out):
                raise artifacts.RunError(
                    f"{out} holds a finished run. To replace it, rerun with --overwrite (the old run stays as it is "
                    "until the new one finishes); to keep it, choose another --out.")
            if target != out and artifacts.is_finished(target):  # killed just before the swap
                if artifacts.read_manifest(target).get("training", {}).get("command") != command:
                    shutil.rmtree(target)  # another command's replacement: not what was asked for now
            resume = f"rerun the same command to resume ({os.path.join(target, CHECKPOINTS)} holds the state)"
            if not artifacts.is_finished(target):
                with distribute.run_directory(target, strategy) as run_dir:
                    train(variant, command=command, strategy=strategy,
                          resume_from=os.path.join(target, CHECKPOINTS), **{**args, "out": run_dir})
            if chief and target != out:
                artifacts.replace_run(target, out)
            manifest = artifacts.read_manifest(out) if chief else None
    except (data.DatasetError, artifacts.RunError, ValueError, OSError) as err:
        print(f"error: {describe_error(err)}", file=sys.stderr)
        return 2
    except callbacks.Diverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:  # callbacks.Interrupted says where the state is; a bare one does not
        print(str(err) or f"interrupted: {resume}.", file=sys.stderr)
        return 130
    if chief:
        print(f"wrote {out} ({len(manifest['artifacts'])} artifacts)")
    else:
        print("worker done: the chief writes the run")
    return 0


def describe_error(err):
    """One line for an error that stops a run; a full disk says what to do."""
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f" writing {err.filename}" if err.filename else ""
        return (f"no space left on the device{where}. Free some space and rerun the same command: it resumes from "
                "the last checkpoint, which is intact.")
    return str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
