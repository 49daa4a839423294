"""Callbacks of the training loop: progress lines, resumable state, and the guards that stop it.

Their order in `fit` matters, because an exception raised by one skips those after it:
`StopOnNaN` comes first, so a diverged step never reaches the checkpoint; `Checkpoint` comes after
the `CSVLogger`, so a kill between the epoch's row and its checkpoint leaves a row too many (which
`truncate_history` drops), never one too few; `StopOnInterrupt` comes last, so the checkpoint has
counted the step it saves.
"""

import contextlib
import csv
import json
import math
import os
import signal
import sys
import threading
import time

import keras
import numpy as np

from zoo.artifacts import RunError
from zoo.files import atomic_write, write_json_atomic

STATE = "state.json"


class Diverged(RuntimeError):
    """Training produced a NaN or Inf loss."""


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT after saving its state."""


class Progress(keras.callbacks.Callback):
    """Prints one line per epoch with the losses, the KL, a VQ-VAE's codebook perplexity and usage,
    and the training throughput (images/s); within an epoch that runs longer, a progress line with
    the step, the running losses, images/s and the time left.

    On a terminal (`interactive`) the progress line appears once an epoch has run `DELAY` seconds
    and is rewritten in place with a carriage return every `TTY_EVERY` seconds; the epoch line then
    replaces it. Elsewhere (a log file, a pipe, CI) it is a plain line, printed at most every
    `LOG_EVERY` seconds, so a log holds a few progress lines per long epoch and no control
    characters. Progress lines start with two spaces; epoch lines with `epoch`.

    Between updates a step costs one clock reading. The images/s and the time left count from the
    end of the epoch's first step, so that tracing and compiling do not count.

    Args:
        num_images: training images per epoch.
        epochs: epochs of the run.
        print_fn: `print`-like; in-place updates are passed `end=""`.
        steps_per_epoch: steps in an epoch; None takes Keras' count (`params["steps"]`), and when
            that is unknown too, the steps of the last whole epoch. Without any, the line shows the
            images done and their rate, and no time left.
        batch_size: images per step, to count images when the steps per epoch are unknown (without
            it and without steps, the line shows steps/s).
        interactive: rewrite the line in place; None: when `print_fn` is `print` and stdout is a
            terminal.
        clock: seconds, as `time.perf_counter` (tests pass a fake clock).
    """

    shown = ("kl", "val_kl", "perplexity", "usage")  # besides every loss
    DELAY, TTY_EVERY, LOG_EVERY = 3.0, 0.5, 20.0  # seconds

    def __init__(self, num_images, epochs, print_fn=print, steps_per_epoch=None, batch_size=None, interactive=None,
                 clock=time.perf_counter):
        super().__init__()
        self.num_images, self.epochs, self.print_fn = num_images, epochs, print_fn
        self.steps_per_epoch, self.batch_size, self.clock = steps_per_epoch, batch_size, clock
        self.interactive = print_fn is print and sys.stdout.isatty() if interactive is None else interactive
        self.throughput = []  # images/s of each epoch, resumed epochs included (see Checkpoint)
        self.learned_steps = None  # steps of the last whole epoch, when nothing else says how many
        self.width = 0  # characters of the progress line now on the terminal (0: none)

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step, self.first = epoch, 0, None
        self.start = self.clock()
        self.next_update = self.start + (self.DELAY if self.interactive else self.LOG_EVERY)
        self.train_seconds = None

    def on_train_batch_end(self, batch, logs=None):
        self.step = batch + 1
        now = self.clock()
        if self.first is None:
            self.first = (now, self.step)
        if now >= self.next_update:
            self.next_update = now + (self.TTY_EVERY if self.interactive else self.LOG_EVERY)
            self._show(self._progress_line(logs, now))

    def on_test_begin(self, logs=None):  # validation starts: training of this epoch is over
        if self.train_seconds is None:
            self.train_seconds = self.clock() - self.start

    def on_epoch_end(self, epoch, logs=None):
        seconds = self.train_seconds or self.clock() - self.start
        self.throughput.append(self.num_images / seconds)
        if self._total() is None:
            self.learned_steps = self.step or None
        if self.width:  # clear the progress line the epoch line replaces
            self.print_fn("\r" + " " * self.width + "\r", end="", flush=True)
            self.width = 0
        self.print_fn(f"epoch {epoch + 1}/{self.epochs}  {self._metrics(logs)}  {self.throughput[-1]:.0f} img/s",
                      flush=True)

    def _metrics(self, logs):
        return "  ".join(f"{k} {v:.2f}" for k, v in (logs or {}).items() if "loss" in k or k in self.shown)

    def _total(self):
        return self.steps_per_epoch or (self.params or {}).get("steps") or self.learned_steps

    def _progress_line(self, logs, now):
        total, step = self._total(), self.step
        per_step = self.batch_size or (self.num_images / total if total else None)
        done = None if per_step is None else step * per_step
        if done is not None and total:
            done = min(done, self.num_images)
        since, first_step = self.first
        if step > first_step and now > since:  # from the end of the first step: tracing and compiling excluded
            seconds, steps = now - since, step - first_step
        else:
            seconds, steps = max(now - self.start, 1e-9), step
        parts = [f"  epoch {self.epoch + 1}/{self.epochs}",
                 f"step {step}/{total} ({100 * step // total}%)" if total else f"step {step}"]
        if done is not None and not total:
            parts.append(f"{done:.0f} images")
        parts.append(self._metrics(logs))
        parts.append(f"{steps * per_step / seconds:.0f} img/s" if per_step else f"{steps / seconds:.1f} steps/s")
        if total:
            parts.append(f"ETA {_duration(max(total - step, 0) * seconds / steps)}")
        return "  ".join(part for part in parts if part)

    def _show(self, line):
        if self.interactive:
            self.print_fn("\r" + line.ljust(self.width), end="", flush=True)
            self.width = max(self.width, len(line))
        else:
            self.print_fn(line, flush=True)


def _duration(seconds):
    """`seconds` as 42s, 3:07 or 1:02:03."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping on `val_loss` with the best weights restored, whose counters and best
    weights can be carried across a restart (`get_state` / `set_state`, used by `Checkpoint`).

    Keras' own resets them in `on_train_begin`, so a resumed run would forget the best epoch
    before the kill and return worse weights.
    """

    def __init__(self, patience):
        super().__init__("val_loss", patience=patience, restore_best_weights=True)
        self._resumed = None

    def get_state(self):
        return {"wait": self.wait, "best": self.best, "best_epoch": self.best_epoch,
                "stopped_epoch": self.stopped_epoch}

    def set_state(self, state, best_weights):
        self._resumed = (state, best_weights)

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self._resumed:
            state, self.best_weights = self._resumed
            self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
            self.stopped_epoch = state["stopped_epoch"]


class Checkpoint(keras.callbacks.Callback):
    """Saves the training state at every epoch end (and every `every_steps` steps), for a rerun to
    resume from.

    The state: the model's weights with the optimizer's (moments and step count, so the learning
    rate schedule goes on where it was), the epochs done, and the early-stopping counters with
    their best weights. A rerun reloads it with `restore` and starts `fit` at `initial_epoch`.
    A state saved within an epoch (a step checkpoint, or Ctrl-C) resumes that epoch from its first
    batch with the weights reached.

    Why not `keras.callbacks.BackupAndRestore`: it rewrites `latest.weights.h5` in place, so a kill
    during the write leaves a checkpoint that cannot be read, and after a restore it does not
    restore its epoch counter, so its step checkpoints record epoch 0. Here every file is written
    under a new name, then `state.json` (renamed into place, atomically) names the files of the
    current state; files it does not name are leftovers and are deleted. The variables go to `.npz`
    files, not `save_weights`' HDF5: on a full disk h5py's half-written file could not be closed
    and crashed the interpreter at exit, where numpy's write fails with a plain OSError.

    Args:
        directory: the folder to write (`OUT/checkpoints`; a temporary one on non-chief workers).
        fingerprint: JSON-able settings a state must have been saved with to be restored (model
            configuration, data, batch size, epochs): weights of another model or the middle of
            another run are refused, not loaded.
        every_steps: also save every this many training steps (0: at epoch ends only).
        early_stopping, progress: the `ResumableEarlyStopping` and `Progress` whose state is saved too.
    """

    def __init__(self, directory, fingerprint, every_steps=0, early_stopping=None, progress=None):
        super().__init__()
        self.directory, self.every_steps = directory, int(every_steps)
        self.fingerprint = json.loads(json.dumps(fingerprint))  # tuples -> lists, as read back
        self.early_stopping, self.progress = early_stopping, progress
        self.epoch = self.step = 0
        self.saved = None  # (epoch, step) of the last state written or restored
        self.best_file = None  # the early-stopping weights file written last

    def restore(self, model, source=None):
        """Loads the state saved in `source` (default: `directory`) into `model` and the callbacks.

        Returns:
            The state (`epoch`: epochs done, `step`: steps into the next, `stopped`: True when the run
            had stopped early), or None when `source` holds none.

        Raises:
            RunError: the state was saved with other settings.
        """
        source = source or self.directory
        state = read_state(source)
        if state is None:
            return None
        if state["fingerprint"] != self.fingerprint:
            differ = sorted(k for k in {*state["fingerprint"], *self.fingerprint}
                            if state["fingerprint"].get(k) != self.fingerprint.get(k))
            raise RunError(f"{source} holds the state of an unfinished run with other settings (they differ in "
                           f"{', '.join(differ)}). Rerun with that run's settings to resume it, or delete {source} "
                           "to start over.")
        with model.distribute_strategy.scope():
            if not model.optimizer.built:  # its variables must exist to be loaded
                model.optimizer.build(model.trainable_variables)
            variables = _state_variables(model)
            values = _load_arrays(os.path.join(source, state["weights"]))
            if len(values) != len(variables):
                raise RunError(f"{source} holds {len(values)} arrays for a model with {len(variables)} variables; "
                               f"delete {source} to start the run over.")
            for variable, value in zip(variables, values):
                variable.assign(value)
        if self.early_stopping is not None and state.get("best_weights"):
            best = _load_arrays(os.path.join(source, state["best_weights"]))
            self.early_stopping.set_state(state["early_stopping"], best)
            self.best_file = state["best_weights"] if source == self.directory else None
        if self.progress is not None:
            self.progress.throughput = list(state.get("throughput", []))
        self.epoch, self.step = state["epoch"], state["step"]
        self.saved = (self.epoch, self.step) if source == self.directory else None
        return state

    def describe(self):
        """Where the last saved state is, in words."""
        if self.saved is None:
            return "No state had been saved yet."
        epoch, step = self.saved
        when = f"after epoch {epoch}" if not step else f"at step {step} of epoch {epoch + 1}"
        return f"The state {when} is kept in {self.directory}."

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.step = epoch, 0

    def on_train_batch_end(self, batch, logs=None):
        self.step = batch + 1
        if self.every_steps and self.step % self.every_steps == 0:
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        self.epoch, self.step = epoch + 1, 0
        self.save()

    def save(self):
        """Writes the state reached now (`epoch` epochs done and `step` steps into the next), unless
        it is the state saved last."""
        if self.saved == (self.epoch, self.step):
            return
        os.makedirs(self.directory, exist_ok=True)
        state = {"epoch": self.epoch, "step": self.step, "stopped": bool(self.model.stop_training),
                 "fingerprint": self.fingerprint, "weights": f"state-{self.epoch:04d}-{self.step:06d}.npz"}
        arrays = [keras.ops.convert_to_numpy(v) for v in _state_variables(self.model)]
        atomic_write(os.path.join(self.directory, state["weights"]), lambda tmp: np.savez(tmp, *arrays))
        stopping = self.early_stopping
        if stopping is not None and stopping.best_weights is not None:
            state["early_stopping"] = stopping.get_state()
            state["best_weights"] = f"best-{stopping.best_epoch:04d}.npz"
            if state["best_weights"] != self.best_file:  # a new best epoch
                atomic_write(os.path.join(self.directory, state["best_weights"]),
                             lambda tmp: np.savez(tmp, *stopping.best_weights))
                self.best_file = state["best_weights"]
        if self.progress is not None:
            state["throughput"] = self.progress.throughput
        write_json_atomic(os.path.join(self.directory, STATE), state)
        for name in os.listdir(self.directory):  # what state.json does not name is stale
            if name not in (STATE, state["weights"], state.get("best_weights")):
                os.remove(os.path.join(self.directory, name))
        self.saved = (self.epoch, self.step)


def _state_variables(model):
    """What a checkpoint holds, in a fixed order: the model's variables, then the optimizer's, then
    those of any optimizer a model keeps for a network of its own (`extra_optimizers`, built by its
    `compile`: a VAE-GAN's discriminator)."""
    optimizers = [model.optimizer, *getattr(model, "extra_optimizers", ())]
    return [*model.weights, *(v for optimizer in optimizers for v in optimizer.variables)]


def _load_arrays(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files))]


def read_state(directory):
    """The `state.json` of a checkpoint folder, or None when it has none."""
    path = os.path.join(directory, STATE)
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise RunError(f"{path} cannot be read ({err}); delete {directory} to start the run over.") from err


class StopOnNaN(keras.callbacks.Callback):
    """Raises `Diverged` at the first NaN or Inf training loss (checked every step) or validation loss.

    Why not `keras.callbacks.TerminateOnNaN` alone: it only asks `fit` to stop, so the epoch still
    ends, the NaN weights are checkpointed over the last good state and `fit` returns normally (the
    recipe would save a broken model and exit 0). Raising skips every later callback, so the last
    checkpoint stays the last good state and the recipe exits non-zero.
    """

    def __init__(self, checkpoint=None):
        super().__init__()
        self.checkpoint, self.epoch = checkpoint, 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        self._check(logs, ("loss",), f"step {batch + 1} of epoch {self.epoch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        self._check(logs, ("loss", "val_loss"), f"the end of epoch {epoch + 1}")

    def _check(self, logs, keys, where):
        for key in keys:
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(value):
                if self.checkpoint is not None and self.checkpoint.saved:
                    advice = (f"{self.checkpoint.describe()} Lower --learning-rate or set --clip-norm, then rerun "
                              "to resume from it.")
                else:
                    advice = "No state had been saved yet: lower --learning-rate or set --clip-norm and rerun."
                raise Diverged(f"training diverged: {key} is {value} at {where}; stopped without saving that "
                               f"state. {advice}")


class Resample(keras.callbacks.Callback):
    """At the start of every epoch, sets the probabilities with which the training images `(x, y)`
    are drawn (`zoo.training.resampled_batches`) to the model's `sampling_probabilities`: the
    DB-VAE's debiasing, from the latent space as it is at that epoch."""

    def __init__(self, x, y, log_probabilities):
        super().__init__()
        self.x, self.y, self.log_probabilities = x, y, log_probabilities

    def on_epoch_begin(self, epoch, logs=None):
        p = self.model.sampling_probabilities(self.x, self.y)
        self.log_probabilities.assign(np.log(np.maximum(p, np.finfo(np.float32).tiny)).astype(np.float32))


class StopOnInterrupt(keras.callbacks.Callback):
    """Turns Ctrl-C (SIGINT) during `fit` into a clean stop: the state is saved at the next step
    boundary, then `Interrupted` is raised with how to resume. A second Ctrl-C stops at once.

    Use as `with stop.installed(): model.fit(...)`, then `stop.raise_if_requested()` for a Ctrl-C
    that came after the last step; outside, SIGINT has Python's handler again.
    """

    def __init__(self, checkpoint, resume_hint="rerun the same command"):
        super().__init__()
        self.checkpoint, self.resume_hint = checkpoint, resume_hint
        self.requested = False

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_train_batch_end(self, batch, logs=None):
        self.raise_if_requested()

    def on_test_batch_end(self, batch, logs=None):
        self.raise_if_requested()

    def raise_if_requested(self):
        if self.requested:
            self.checkpoint.save()
            raise Interrupted(f"interrupted. {self.checkpoint.describe()} To resume, {self.resume_hint}.")


def truncate_history(path, epochs):
    """Keeps the header and the rows of the first `epochs` epochs of a `history.csv`.

    The restored state has done exactly those epochs; a row after them is from an epoch whose
    checkpoint a kill cut short, and that epoch is trained (and logged) again. Without this,
    `CSVLogger(append=True)` would log such an epoch twice.
    """
    if not os.path.exists(path):
        return
    if not epochs:
        os.remove(path)
        return
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows:
        return
    header, column = rows[0], rows[0].index("epoch")
    kept = [r for r in rows[1:] if len(r) == len(header) and r[column].isdigit() and int(r[column]) < epochs]

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows([header, *kept])

    atomic_write(path, write)
