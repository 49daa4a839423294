"""What every benchmark shares: how it times training epochs and how it names the machine and command.

The benchmarks run as scripts (`python benchmarks/NAME.py`), so they import this as `common`.
"""

import os
import platform
import shlex
import sys
import time

import numpy as np


def images_per_second(models, dataset, images, epochs):
    """Median images/s of each Keras model over `epochs` timed epochs of `fit` on `dataset`
    (`images` images per epoch), after one untimed warm-up epoch each (tracing).

    The models take turns epoch by epoch, in reversed order every other round, so that load from
    elsewhere on the machine, and any advantage of going first, hits them alike.
    """
    seconds = {name: [] for name in models}
    for round_ in range(epochs + 1):
        for name in (list(models) if round_ % 2 == 0 else list(reversed(models))):
            start = time.perf_counter()
            models[name].fit(dataset, epochs=1, shuffle=False, verbose=0)  # the pipeline shuffles
            if round_:  # round 0 traces the step functions
                seconds[name].append(time.perf_counter() - start)
    return {name: images / float(np.median(s)) for name, s in seconds.items()}


def machine(*libraries):
    """The CPU, core count, OS and Python, plus `"name version"` of each library passed in."""
    cpu = platform.processor() or platform.machine()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    versions = ", ".join([f"Python {platform.python_version()}", *(f"{m.__name__} {m.__version__}" for m in libraries)])
    return f"{cpu}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}; {versions}"


def command():
    """The command line this benchmark was run with, to print beside its table."""
    return " ".join(["python", *map(shlex.quote, sys.argv)])
