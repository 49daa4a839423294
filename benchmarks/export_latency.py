"""Decoder speed per runtime: batch-1 latency and batch-256 throughput, with file sizes.

Compares the Keras model (`model.decode(z, labels).mean()`, eager), the SavedModel `decode`
signature, ONNX Runtime (CPU, and CUDA where this onnxruntime build has it) and the TFLite files
of a run exported with `python -m export`. Every row decodes the same inputs through the same
public entry point an app would call, validation included. Prints a markdown table, the machine
and the command.

    python benchmarks/export_latency.py runs/cvae --repeats 200
"""

import argparse
import os
import sys
import time

import numpy as np

import common
import zoo
from export.formats import FORMATS
from export.parity import reference_decoder
from export.runtime import load_decoder, sample_inputs
from zoo import artifacts

THROUGHPUT_BATCH = 256
BUDGET_S = 10.0


def median_seconds(fn, inputs, repeats, warmup, budget_s=BUDGET_S):
    """Median wall time of `fn(inputs)` over `repeats` calls after `warmup` calls; a slow runtime
    stops early once it has spent `budget_s` seconds and made at least 3 timed calls."""
    for _ in range(warmup):
        fn(inputs)
    times, spent = [], 0.0
    while len(times) < repeats and (len(times) < 3 or spent < budget_s):
        start = time.perf_counter()
        fn(inputs)
        times.append(time.perf_counter() - start)
        spent += times[-1]
    return float(np.median(times))


def runtimes(run_dir):
    """(name, file or folder measured for size, decode function of named inputs) per runtime."""
    model = zoo.load_model(run_dir)
    keras_decode = lambda inputs: model.decode(*inputs.values()).mean().numpy()
    rows = [("Keras model (eager)", artifacts.MODEL_FILE, keras_decode),
            ("SavedModel `decode` signature", artifacts.SAVED_MODEL_DIR,
             reference_decoder(os.path.join(run_dir, artifacts.SAVED_MODEL_DIR)))]
    import onnxruntime

    for provider in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        if provider in onnxruntime.get_available_providers():
            decoder = load_decoder(os.path.join(run_dir, FORMATS["onnx"].filename), providers=[provider])
            rows.append((f"ONNX Runtime {provider.replace('ExecutionProvider', '')}", FORMATS["onnx"].filename,
                         _runtime_decode(decoder)))
    for name, fmt in FORMATS.items():
        path = os.path.join(run_dir, fmt.filename)
        if name.startswith("tflite") and os.path.exists(path):
            rows.append((f"LiteRT {name}", fmt.filename, _runtime_decode(load_decoder(path))))
    return rows


def _runtime_decode(decoder):
    return lambda inputs: decoder.decode(*inputs.values())


def size_kib(path):
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, f)) for root, _, files in os.walk(path) for f in files) / 1024
    return os.path.getsize(path) / 1024


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run directory exported with `python -m export`")
    parser.add_argument("--repeats", type=int, default=200, help="timed batch-1 calls (batch 256: a tenth)")
    args = parser.parse_args(argv)
    onnx_path = os.path.join(args.run_dir, FORMATS["onnx"].filename)
    if not os.path.exists(onnx_path):
        print(f"error: {onnx_path} not found; run `python -m export {args.run_dir}` first", file=sys.stderr)
        return 2
    facts = load_decoder(onnx_path).facts
    try:
        rows = runtimes(args.run_dir)
    except artifacts.RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    single, batch = sample_inputs(facts, 1, seed=0), sample_inputs(facts, THROUGHPUT_BATCH, seed=1)
    print(f"Decoder of `{args.run_dir}` ({facts['variant']}, latent {facts['latent_dim']}, "
          f"output {'x'.join(map(str, facts['output_shape']))})\n")
    print("| runtime | file | size (KiB) | batch 1 latency (ms) | batch 256 throughput (images/s) |")
    print("|---|---|---:|---:|---:|")
    latencies = {}
    for name, relpath, decode in rows:
        latencies[name] = median_seconds(decode, single, args.repeats, warmup=20)
        throughput = THROUGHPUT_BATCH / median_seconds(decode, batch, max(args.repeats // 10, 3), warmup=1)
        print(f"| {name} | `{relpath}` | {size_kib(os.path.join(args.run_dir, relpath)):,.0f} | "
              f"{latencies[name] * 1e3:.3f} | {throughput:,.0f} |", flush=True)
    print(f"\nMedian of {args.repeats} batch-1 calls and {max(args.repeats // 10, 3)} batch-256 calls after warm-up "
          f"(fewer, at least 3, for a runtime past {BUDGET_S:g} s); sizes of `model.keras` and `saved_model/` are "
          "the whole model.")
    ratio = latencies["SavedModel `decode` signature"] / latencies["ONNX Runtime CPU"]
    print(f"ONNX Runtime CPU batch-1 latency: 1/{ratio:.1f} of the SavedModel signature's.")
    import onnxruntime
    import tensorflow

    print(f"Machine: {common.machine(tensorflow, onnxruntime)}")
    print(f"Command: {common.command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
