"""Peak memory and wall time of `Decoder.generate(n)`: does memory stay flat as n grows?

Each n runs in a fresh interpreter, so one measurement's peak cannot hide another's. There the
decoder is loaded, the resident set size measured (the baseline), `generate(n)` called, and the
peak resident set size since start-up read (`ru_maxrss`). The overhead is what the peak adds to
the baseline beyond the returned images themselves (n x H x W x C float32): the decoder's batches
and ONNX Runtime's working memory, which should not grow with n. Prints a markdown table, the
machine and the command.

    python benchmarks/generate_memory.py --n 1000 100000 1000000
    python benchmarks/generate_memory.py --model runs/cvae/decoder.onnx --n 10000
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import common

GIB = 2**30


def measure(model, n, label):
    """Runs in the child: loads the decoder, generates n images, returns what it measured."""
    import zoo
    from export.runtime import load_decoder

    if os.path.isfile(model):
        decoder = load_decoder(model, providers=["CPUExecutionProvider"])
    else:
        decoder = zoo.load_pretrained(model, format="onnx", providers=["CPUExecutionProvider"])
    baseline = resident_bytes()
    start = time.perf_counter()
    images = decoder.generate(n, labels=label if decoder.num_classes else None, seed=0)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)
    return {"n": n, "batch_size": decoder.batch_size, "baseline": baseline, "peak": peak,
            "images": images.nbytes, "seconds": seconds}


def resident_bytes():
    """The resident set size now (Linux's /proc), else the peak so far."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="cvae-mnist5k", help="a pretrained name or a .onnx decoder file")
    parser.add_argument("--n", type=int, nargs="+", default=[1000, 100000], help="image counts, one run each")
    parser.add_argument("--label", type=int, default=3, help="the class of a conditional decoder's images")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.model, args.child, args.label)))
        return 0
    import numpy
    import onnxruntime

    print("| n | batch size | baseline RSS (GiB) | peak RSS (GiB) | returned images (GiB) | "
          "peak - baseline - images (GiB) | wall time (s) | images/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in args.n:
        child = [sys.executable, os.path.abspath(__file__), "--model", args.model, "--label", str(args.label),
                 "--child", str(n)]
        result = subprocess.run(child, capture_output=True, text=True)
        if result.returncode:
            print(f"error: n={n} failed:\n{result.stderr}", file=sys.stderr)
            return 1
        row = json.loads(result.stdout.splitlines()[-1])
        overhead = row["peak"] - row["baseline"] - row["images"]
        print(f"| {n:,} | {row['batch_size']} | {row['baseline'] / GIB:.3f} | {row['peak'] / GIB:.3f} | "
              f"{row['images'] / GIB:.3f} | {overhead / GIB:.3f} | {row['seconds']:.1f} | {n / row['seconds']:,.0f} |")
    print(f"\n{args.model}; {common.machine(numpy, onnxruntime)}\n{common.command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
