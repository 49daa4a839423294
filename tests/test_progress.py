"""The Progress callback on a fake clock: the epoch line as before, and within long epochs a
progress line, rewritten in place on a terminal and printed every LOG_EVERY seconds elsewhere."""

import re
import sys

import keras
import numpy as np
import pytest

from zoo.callbacks import Progress

EPOCH_LINE = re.compile(r"epoch \d+/\d+  loss \d+\.\d\d  \d+ img/s$")


class Clock:
    """A fake `time.perf_counter`: `now` moves only when the test moves it; readings are counted."""

    def __init__(self):
        self.now, self.readings = 0.0, 0

    def __call__(self):
        self.readings += 1
        return self.now


class Output:
    """A fake `print`: records each call's text and `end`."""

    def __init__(self):
        self.calls = []

    def __call__(self, text, end="\n", flush=False):
        self.calls.append(text + end)

    def lines(self):
        return "".join(self.calls).splitlines()

    def screen(self):
        """What a terminal shows: a carriage return moves back to the line's start, and what follows
        overwrites it character by character."""
        rows, row, column = [], [], 0
        for char in "".join(self.calls):
            if char == "\n":
                rows.append("".join(row).rstrip())
                row, column = [], 0
            elif char == "\r":
                column = 0
            else:
                row[column:column + 1] = [char]
                column += 1
        return rows + (["".join(row).rstrip()] if row else [])


def run_epoch(progress, clock, steps, first=5.0, step=0.5, epoch=0):
    """One epoch of `steps` steps: the first takes `first` seconds (tracing), the others `step`."""
    progress.on_epoch_begin(epoch)
    for batch in range(steps):
        clock.now += first if batch == 0 else step
        progress.on_train_batch_end(batch, {"loss": 2.0})
    progress.on_epoch_end(epoch, {"loss": 2.0, "val_loss": 2.5})


def test_a_log_gets_a_plain_progress_line_every_log_every_seconds():
    clock, out = Clock(), Output()
    progress = Progress(3200, 2, out, steps_per_epoch=100, interactive=False, clock=clock)
    run_epoch(progress, clock, 100)  # 5 s, then 99 steps of 0.5 s: 54.5 s
    # Step 31 ends at 20 s: 30 steps of 32 images in the 15 s since the first step (64 img/s), and
    # 69 steps left at 0.5 s each.
    assert out.lines() == ["  epoch 1/2  step 31/100 (31%)  loss 2.00  64 img/s  ETA 34s",
                           "  epoch 1/2  step 71/100 (71%)  loss 2.00  64 img/s  ETA 14s",
                           "epoch 1/2  loss 2.00  val_loss 2.50  59 img/s"]
    assert not any("\r" in call for call in out.calls)


def test_a_terminal_line_is_rewritten_in_place_and_replaced_by_the_epoch_line():
    clock, out = Clock(), Output()
    progress = Progress(3200, 2, out, steps_per_epoch=100, interactive=True, clock=clock)
    run_epoch(progress, clock, 100, first=0.125, step=0.125)  # 12.5 s
    updates = [call for call in out.calls if call.startswith("\r  epoch")]
    assert len(updates) == 20  # at 3 s, then every 0.5 s
    assert all(not call.endswith("\n") for call in updates)
    # Step 24 ends at 3 s: 23 steps of 32 images in 2.875 s (256 img/s), 76 steps left (9.5 s).
    assert updates[0] == "\r  epoch 1/2  step 24/100 (24%)  loss 2.00  256 img/s  ETA 10s"
    assert out.screen() == ["epoch 1/2  loss 2.00  val_loss 2.50  256 img/s"]  # no leftover of the longer line
    run_epoch(progress, clock, 100, first=0.125, step=0.125, epoch=1)
    assert out.screen() == ["epoch 1/2  loss 2.00  val_loss 2.50  256 img/s",
                            "epoch 2/2  loss 2.00  val_loss 2.50  256 img/s"]


@pytest.mark.parametrize("interactive", [True, False])
def test_short_epochs_print_only_their_epoch_line(interactive):
    clock, out = Clock(), Output()
    progress = Progress(320, 1, out, steps_per_epoch=10, interactive=interactive, clock=clock)
    run_epoch(progress, clock, 10, first=1.0, step=0.1)
    assert len(out.calls) == 1 and EPOCH_LINE.match(out.lines()[0].replace("  val_loss 2.50", ""))


def test_between_updates_a_step_reads_the_clock_once_and_prints_nothing():
    clock, out = Clock(), Output()
    progress = Progress(3200, 1, out, steps_per_epoch=100, interactive=False, clock=clock)
    run_epoch(progress, clock, 100, first=0.1, step=0.1)
    assert clock.readings == 100 + 2 and len(out.calls) == 1  # each step, the epoch's start and its end


def test_unknown_steps_show_images_and_rate_then_the_count_of_the_last_epoch():
    clock, out = Clock(), Output()
    progress = Progress(3200, 2, out, batch_size=32, interactive=False, clock=clock)
    run_epoch(progress, clock, 100)
    assert out.lines()[0] == "  epoch 1/2  step 31  992 images  loss 2.00  64 img/s"
    run_epoch(progress, clock, 100, epoch=1)
    assert out.lines()[3] == "  epoch 2/2  step 31/100 (31%)  loss 2.00  64 img/s  ETA 34s"
    no_batch = Progress(3200, 1, Output(), interactive=False, clock=clock)
    run_epoch(no_batch, clock, 100)
    assert no_batch.print_fn.lines()[0] == "  epoch 1/1  step 31  loss 2.00  2.0 steps/s"


def test_the_line_is_in_place_only_for_print_on_a_terminal(monkeypatch):
    class Terminal:
        def isatty(self):
            return True

        def write(self, text):
            pass

    monkeypatch.setattr(sys, "stdout", Terminal())
    assert Progress(10, 1).interactive and not Progress(10, 1, print_fn=Output()).interactive
    monkeypatch.setattr(Terminal, "isatty", lambda self: False)
    assert not Progress(10, 1).interactive


def test_keras_fit_gives_the_number_of_steps():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile("sgd", "mse")
    clock, out = Clock(), Output()
    progress = Progress(64, 1, out, interactive=False, clock=clock)
    progress.LOG_EVERY = 0.0  # a line after every step

    def tick(batch, logs):
        clock.now += 1.0

    x = np.zeros((64, 3), np.float32)
    model.fit(x, x[:, :1], batch_size=8, epochs=1, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_train_batch_end=tick), progress])
    lines = out.lines()
    assert [line.split("  ")[2] for line in lines[:-1]] == [f"step {s}/8 ({100 * s // 8}%)" for s in range(1, 9)]
    assert lines[-2].endswith("8 img/s  ETA 0s") and EPOCH_LINE.match(lines[-1])
