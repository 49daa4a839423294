"""Decoder speed per runtime: batch-1 latency and batch-256 throughput, with file sizes; and, for a
run exported with its encoder, encode and score throughput against TensorFlow.

Compares the Keras model (`model.decode(z, labels).mean()`, eager), the SavedModel `decode`
signature, ONNX Runtime (CPU, and CUDA where this onnxruntime build has it) and the TFLite files
of a run exported with `python -m export`. Every row decodes the same inputs through the same
public entry point an app would call, validation included; one more row runs the same ONNX file
on one `onnxruntime.InferenceSession` with default options and no checks, to show what
`export.runtime`'s sessions change. The rows take turns in rounds, so that load from elsewhere on
the machine hits them alike. Prints markdown tables, the machine and the command.

With `encoder.onnx` in the run (`python -m export RUN_DIR --parts decoder,encoder`), a second
table times batch-256 `encode` and `score` (k = 1 and k = 100) through
`export.runtime.load_model` against TensorFlow: the SavedModel `encode` signature, and
`zoo.evaluate.negative_log_likelihood` on the SavedModel's `log_weights` signature (the live
model's when a run predates it), the zoo's own NLL.

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
from export.runtime.sessions import CHUNK, MIN_SPLIT, cpu_threads
from zoo import artifacts

THROUGHPUT_BATCH = 256
BUDGET_S = 10.0
ROUNDS = 5
SCORE_K = (1, 100)
SAVED_MODEL = "SavedModel `decode` signature"
ONNX_CPU = "ONNX Runtime CPU"


def median_seconds(fns, inputs, repeats, warmup, budget_s=BUDGET_S, rounds=ROUNDS):
    """`{name: median wall time of fn(inputs)}` over `repeats` calls each after `warmup` calls,
    made in `rounds` rounds in which every fn takes its turn; a slow fn stops early once it has
    spent `budget_s` seconds and made at least 3 timed calls."""
    for fn in fns.values():
        for _ in range(warmup):
            fn(inputs)
    times = {name: [] for name in fns}
    per_round = max(1, -(-repeats // rounds))
    for _ in range(rounds):
        for name, fn in fns.items():
            for _ in range(per_round):
                if len(times[name]) >= repeats or (len(times[name]) >= 3 and sum(times[name]) > budget_s):
                    break
                start = time.perf_counter()
                fn(inputs)
                times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def runtimes(run_dir):
    """(name, file or folder measured for size, decode function of named inputs) per runtime."""
    model = zoo.load_model(run_dir)
    keras_decode = lambda inputs: model.decode(*inputs.values()).mean().numpy()
    saved_model = reference_decoder(os.path.join(run_dir, artifacts.SAVED_MODEL_DIR))
    rows = [("Keras model (eager)", artifacts.MODEL_FILE, keras_decode),
            (SAVED_MODEL, artifacts.SAVED_MODEL_DIR, saved_model)]
    import onnxruntime

    onnx_path = os.path.join(run_dir, FORMATS["onnx"].filename)
    for provider in ("CPUExecutionProvider", "CUDAExecutionProvider"):
        if provider in onnxruntime.get_available_providers():
            decoder = load_decoder(onnx_path, providers=[provider])
            rows.append((f"ONNX Runtime {provider.replace('ExecutionProvider', '')}", FORMATS["onnx"].filename,
                         _runtime_decode(decoder)))
    plain = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    rows.append(("ONNX Runtime CPU, one default `InferenceSession`, no checks", FORMATS["onnx"].filename,
                 lambda inputs: plain.run(["mean"], inputs)[0]))
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


def decoder_table(run_dir, facts, repeats):
    """Prints the decoder table; returns `{runtime: (batch-1 seconds, batch-256 images/s)}`."""
    rows = runtimes(run_dir)
    fns = {name: decode for name, _, decode in rows}
    single, batch = sample_inputs(facts, 1, seed=0), sample_inputs(facts, THROUGHPUT_BATCH, seed=1)
    latency = median_seconds(fns, single, repeats, warmup=20)
    throughput = {name: THROUGHPUT_BATCH / s
                  for name, s in median_seconds(fns, batch, max(repeats // 10, 3), warmup=1).items()}
    print(f"Decoder of `{run_dir}` ({facts['variant']}, latent {facts['latent_dim']}, "
          f"output {'x'.join(map(str, facts['output_shape']))})\n")
    print("| runtime | file | size (KiB) | batch 1 latency (ms) | batch 256 throughput (images/s) |")
    print("|---|---|---:|---:|---:|")
    for name, relpath, _ in rows:
        print(f"| {name} | `{relpath}` | {size_kib(os.path.join(run_dir, relpath)):,.0f} | "
              f"{latency[name] * 1e3:.3f} | {throughput[name]:,.0f} |")
    print(f"\nMedian of {repeats} batch-1 calls and {max(repeats // 10, 3)} batch-256 calls after warm-up, the "
          f"runtimes taking turns in {ROUNDS} rounds (fewer calls, at least 3, for a runtime past {BUDGET_S:g} s); "
          "sizes of `model.keras` and `saved_model/` are the whole model.")
    return {name: (latency[name], throughput[name]) for name in fns}


def model_table(run_dir, repeats):
    """Prints batch-256 encode and score throughput, `export.runtime.load_model` (ONNX Runtime CPU)
    against TensorFlow, when the run has an exported encoder; else says how to get one."""
    if not os.path.exists(os.path.join(run_dir, "encoder.onnx")):
        print(f"\n(No encoder.onnx in {run_dir}: `python -m export {run_dir} --parts decoder,encoder` adds encode "
              "and score rows.)")
        return
    import tensorflow as tf

    from export.runtime import load_model
    from zoo import evaluate

    model = load_model(run_dir, providers=["CPUExecutionProvider"])
    saved = tf.saved_model.load(os.path.join(run_dir, artifacts.SAVED_MODEL_DIR))
    if "log_weights" in saved.signatures:
        fns, source = evaluate.saved_model_functions(os.path.join(run_dir, artifacts.SAVED_MODEL_DIR)), "SavedModel"
    else:
        fns, source = evaluate.model_functions(zoo.load_model(run_dir)), "live model (run predates the signature)"
    inputs = {name: value for name, value in sample_inputs(model.encoder.facts, THROUGHPUT_BATCH, seed=2).items()
              if name in ("x", "labels")}
    inputs["x"] = model.prepared(inputs["x"])
    encode = saved.signatures["encode"]
    jobs = {"encode": (lambda i: {k: v.numpy() for k, v in encode(**{n: tf.constant(v) for n, v in i.items()}).items()},
                       lambda i: model.encode(i["x"], i.get("labels")))}
    for k in SCORE_K:
        jobs[f"score, k = {k}"] = (lambda i, k=k: evaluate.negative_log_likelihood(fns, i["x"], i.get("labels"), k=k),
                                   lambda i, k=k: model.score(i["x"], i.get("labels"), k=k))
    print(f"\nWhole model, batch {THROUGHPUT_BATCH} (images/s): TensorFlow (`encode` signature; "
          f"`zoo.evaluate.negative_log_likelihood` on the {source} `log_weights`) against `export.runtime.load_model` "
          "(ONNX Runtime CPU)\n")
    print("| job | TensorFlow | ONNX Runtime CPU | ONNX / TensorFlow |")
    print("|---|---:|---:|---:|")
    for job, (reference, runtime) in jobs.items():
        seconds = median_seconds({"tf": reference, "onnx": runtime}, inputs, max(repeats // 10, 3), warmup=1)
        tf_rate, onnx_rate = (THROUGHPUT_BATCH / seconds[name] for name in ("tf", "onnx"))
        print(f"| {job} | {tf_rate:,.0f} | {onnx_rate:,.0f} | {onnx_rate / tf_rate:.2f} |", flush=True)


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
        results = decoder_table(args.run_dir, facts, args.repeats)
    except artifacts.RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    (tf_latency, tf_rate), (onnx_latency, onnx_rate) = results[SAVED_MODEL], results[ONNX_CPU]
    print(f"ONNX Runtime CPU through `export.runtime`: batch-1 latency 1/{tf_latency / onnx_latency:.1f} of the "
          f"SavedModel signature's; batch-256 throughput {onnx_rate / tf_rate:.2f} times the SavedModel's.")
    print(f"Its CPU sessions: batches under {MIN_SPLIT} run whole on ONNX Runtime's default threads; larger ones in "
          f"chunks of {CHUNK} on {cpu_threads()} single-threaded runs at a time.")
    model_table(args.run_dir, args.repeats)
    import onnxruntime
    import tensorflow

    print(f"\nMachine: {common.machine(tensorflow, onnxruntime)}")
    print(f"Command: {common.command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
