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
from zoo import artifacts, callbacks, data, distribute, distributions, evaluate
from zoo.cli import BINARIZE

HISTORY = "history.csv"
CHECKPOINTS, LOGS = artifacts.WORKING_DIRS


def split_validation(x, y, fraction, seed):
    """A seeded random hold-out of `fraction` of the training images."""
    if not 0 <= fraction < 1:
        raise ValueError(f"Expected a validation fraction in [0, 1), received {fraction}.")
    order = np.random.default_rng(seed).permutation(len(x))
    cut = len(x) - int(round(fraction * len(x)))
    return (x[order[:cut]], y[order[:cut]]), (x[order[cut:]], y[order[cut:]])


def load_data(cls, dataset, seed=0, print_fn=print):
    """The train and test splits of `dataset`, checked for the model class `cls`.

    `data.load` checks shapes, dtype, value range, NaN and labels; here the splits must not be
    empty and, for conditional models, the labels must be class ids (at most `data.MAX_CLASSES`)
    of the classes the training split defines, in both splits. An `.npz` file without a test
    split gets a seeded one held out, and `print_fn` says so.

    Returns:
        `(x, y), (x_test, y_test), num_classes` (None for unconditional models).
    """
    splits = {split: data.load(dataset, split, seed=seed) for split in data.SPLITS}
    for split, (x, _) in splits.items():
        if not len(x):
            raise data.DatasetError(f"{dataset}: the {split} split has no images.")
    if data.lacks_test_split(dataset):
        print_fn(f"note: {dataset} has no test split: holding out {data.TEST_FRACTION:.0%} "
                 f"({len(splits['test'][0])} images, seed {seed}) as the test split", flush=True)
    num_classes = None
    if cls.conditional:
        y = splits["train"][1]
        num_classes = data.num_classes(y, source=f"{dataset} (train split)")
        if num_classes is None:
            raise data.DatasetError(f"{dataset}: a conditional model needs one integer class id per image, "
                                    f"labels of shape ({len(y)},); received labels of shape {y.shape}.")
        for split, (x, y) in splits.items():
            data.validate(x, y, source=f"{dataset} ({split} split)", num_classes=num_classes)
    return splits["train"], splits["test"], num_classes


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
          print_fn=print, **model_options):
    """Trains `variant` on `dataset` and writes a finished run directory to `out`.

    Rerunning a run that was killed, interrupted or diverged resumes it from the state in
    `out/checkpoints` (see `callbacks.Checkpoint`), as long as the model, data, batch size,
    epochs and seed are the same; the learning rate and clipping may change.

    Args:
        variant: a registered model name.
        out: the run directory.
        dataset: a name from `zoo.data.names()` or a dataset file path.
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
    (x, y), (x_test, y_test), num_classes = load_data(cls, dataset, seed, print_fn)
    if num_classes:
        model_options["num_classes"] = num_classes
    (x_train, y_train), (x_val, y_val) = split_validation(x, y, validation_split, seed)
    if not len(x_train):
        raise ValueError(f"A validation split of {validation_split} leaves no training images out of {len(x)}.")
    steps = epochs * int(np.ceil(len(x_train) / batch_size))
    asked = model_options.pop("likelihood", "auto")
    likelihood, share = distributions.choose_likelihood(x_train, asked)
    print_fn(f"likelihood: {likelihood} ({share:.0%} of the training pixels are within {distributions.NEAR_BINARY} "
             f"of 0 or 1{'' if asked == 'auto' else '; set by --likelihood'})", flush=True)
    model = build_model(variant, strategy, learning_rate=learning_rate, steps=steps, clip_norm=clip_norm,
                        mixed_precision=mixed_precision, input_shape=x.shape[1:], latent_dim=latent_dim,
                        likelihood=likelihood, **model_options)

    if model.likelihood != "bernoulli":
        binarize = "none"
    if binarize == "threshold":
        x_train, x_val = data.binarize(x_train), data.binarize(x_val)
    labels = (lambda y: y) if cls.conditional else (lambda y: None)
    pipeline = lambda x, y, **kw: distribute.shard_by_data(data.pipeline(x, labels(y), batch_size=batch_size, **kw))
    train_ds = pipeline(x_train, y_train, shuffle=True, seed=seed, dynamic_binarization=binarize == "dynamic")
    val_ds = pipeline(x_val, y_val) if len(x_val) else None

    progress = callbacks.Progress(len(x_train), epochs, print_fn)
    stopping = callbacks.ResumableEarlyStopping(patience) if val_ds is not None else None
    fingerprint = {"variant": variant, "dataset": dataset, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                   "validation_split": validation_split, "binarize": binarize, "mixed_precision": mixed_precision,
                   "config": {k: v for k, v in model.get_config().items() if k not in ("name", "trainable")}}
    checkpoint = callbacks.Checkpoint(os.path.join(out, CHECKPOINTS), fingerprint, checkpoint_every,
                                      early_stopping=stopping, progress=progress)
    state = checkpoint.restore(model, resume_from)
    done = state["epoch"] if state else 0
    artifacts.begin_run(out)
    history_path = os.path.join(out, HISTORY)
    callbacks.truncate_history(history_path, done)
    interrupt = callbacks.StopOnInterrupt(checkpoint)
    fit_callbacks = [callbacks.StopOnNaN(checkpoint), progress, *([stopping] if stopping else []),
                     keras.callbacks.CSVLogger(history_path, append=True),
                     keras.callbacks.TensorBoard(os.path.join(out, LOGS), write_graph=False), checkpoint, interrupt]
    if state:
        print_fn(f"resuming from {resume_from or checkpoint.directory}: {done} of {epochs} epochs done"
                 + (" (stopped early)" if state["stopped"] else ""), flush=True)
    print_fn(f"training {variant} on {dataset}: {len(x_train)} train / {len(x_val)} validation images, "
             f"{model.count_params():,} parameters, {replicas} replica(s)", flush=True)
    with interrupt.installed():
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, callbacks=fit_callbacks, shuffle=False,
                  initial_epoch=epochs if state and state["stopped"] else done, verbose=0)  # the pipeline shuffles
    interrupt.raise_if_requested()

    metrics = {f"test_{k}": float(v) for k, v in
               model.evaluate(pipeline(x_test, y_test), return_dict=True, verbose=0).items()}
    metrics["epochs_trained"] = checkpoint.epoch
    metrics["train_images_per_second"] = float(np.median(progress.throughput))
    print_fn("test: " + "  ".join(f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in metrics.items()),
             flush=True)

    saved = distribute.float32_copy(model) if mixed_precision else model
    artifacts.save_model(saved, out)
    fields = dict(
        variant=variant, config=saved.get_config(), metrics=metrics,
        dataset={"name": dataset, "train": len(x_train), "validation": len(x_val), "test": len(x_test),
                 "binarize": binarize},
        training={"epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
                  "schedule": "cosine", "seed": seed, "validation_split": validation_split,
                  "patience": patience, "strategy": distribute.strategy_name(strategy), "replicas": replicas,
                  "mixed_precision": mixed_precision, "clip_norm": clip_norm,
                  "resumed_at_epoch": done if state else None, "command": command})
    if distribute.is_chief(strategy):  # the other workers' runs are temporary
        _, sections = evaluate.write_evaluation(out, saved, fields, evaluate.evaluation_settings(nll_samples),
                                                print_fn=print_fn)
        artifacts.merge(fields, **sections)
    # Last: the manifest marks the run finished. The checkpoints go just before it: a kill between
    # the two leaves an unfinished run that trains again, never a finished one with state to resume.
    shutil.rmtree(checkpoint.directory, ignore_errors=True)
    manifest = artifacts.write_manifest(out, **fields)
    return manifest


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
