"""Images/s and peak memory of the three ways a recipe reads images: a folder of PNGs, the same
images packed into TFRecord shards, and the same images in memory (an `.npz` of uint8 arrays).

`--images` 64x64 colour PNGs (a shape of its class on a colour gradient, with a little noise) are
generated into `WORK/folder/`, one subfolder per class, and kept for reruns; then packed with
`python -m zoo.data pack WORK/folder WORK/records --shards 16` (timed), and saved as
`WORK/arrays.npz` (`x_train`, `y_train`, `x_test`, `y_test` as uint8, the folder's own split).
For each source, each in a fresh process:

- pipeline: the training batches exactly as the recipe builds them (`zoo.training.batches` over
  the split less its validation hold-out), iterated for one epoch without a model, timed after
  `--warmup` batches;
- training: `python recipes/train_vae.py --dataset SRC --epochs 1 ...`, whose manifest gives
  `train_images_per_second` (the epoch's training images over its training time, tracing
  included; validation, test scores and pictures not).

Peak RSS is each child's own `ru_maxrss` (`os.wait4`); Linux starts it at the parent's peak, so
the parent makes the images in a child of its own and stays small (its peak is printed). The
recipe's peak is also read when it prints its `test:` line (VmHWM in /proc, polled every 0.25 s):
the training alone, before the evaluation that every recipe runs after it. A child whose resident
memory passes `--max-rss` is killed, so that a measurement cannot take a shared machine's memory.
The CPU that other processes used meanwhile is the machine's busy time (/proc/stat) less the
child's own, in cores: the numbers are only comparable at a similar load.

    python benchmarks/data_pipeline.py --images 100000 --work /tmp/vae-zoo-data-pipeline

Prints what it made, a markdown table, the checks of issue 19, the machine and the command.
"""

import argparse
import json
import multiprocessing
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GIB = 2**30
SIZE = 64  # pixels a side: the size issue 19 asks for
SHAPES = ("disc", "square", "ring", "diamond")  # class k draws SHAPES[k % 4]
RSS_LIMIT_GIB = 2.5  # issue 19: one epoch from the folder or the records stays under this
SPEEDUP = 3.0  # issue 19: the pipeline alone delivers at least this many times training's images/s


def make_image(i, classes, seed=0):
    """Image `i` (uint8 [64, 64, 3]) and its class `i % classes`: a shape of the class, with an
    antialiased edge, on a linear gradient between two colours, plus noise of 1.5% (so its PNG is
    about as compressible as a small photo's, not incompressible noise). The same `i` always gives
    the same image."""
    rng = np.random.default_rng([seed, i])
    label = i % classes
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / (SIZE - 1)
    angle = rng.uniform(0, 2 * np.pi)
    t = 0.5 + (np.cos(angle) * (xx - 0.5) + np.sin(angle) * (yy - 0.5)) / np.sqrt(2)
    start, stop, colour = rng.uniform(0, 1, (3, 3)).astype(np.float32)
    image = start + t[..., None] * (stop - start)
    (cx, cy), r = rng.uniform(0.3, 0.7, 2), rng.uniform(0.12, 0.3)
    dx, dy = np.abs(xx - cx), np.abs(yy - cy)
    distance = {"disc": np.hypot(dx, dy) - r, "square": np.maximum(dx, dy) - r,
                "ring": np.abs(np.hypot(dx, dy) - r) - r / 3, "diamond": dx + dy - 1.3 * r}[SHAPES[label % 4]]
    alpha = np.clip(0.5 - distance * (SIZE - 1), 0, 1)[..., None]
    image = image * (1 - alpha) + colour * alpha + rng.normal(0, 0.015, image.shape)
    return np.round(np.clip(image, 0, 1) * 255).astype(np.uint8), label


def _path(folder, i, classes):
    return os.path.join(folder, f"class{i % classes}", f"{i:07d}.png")


def _write_pngs(job):
    from PIL import Image

    folder, start, stop, classes = job
    for i in range(start, stop):
        Image.fromarray(make_image(i, classes)[0]).save(_path(folder, i, classes), format="PNG")
    return stop - start


def _images(indices, classes):
    return np.stack([make_image(int(i), classes)[0] for i in indices])


def generate(work, n, classes, workers):
    """Writes `WORK/folder`, images 0..n-1 as PNGs, and `WORK/arrays.npz`, the same pixels split
    as the folder splits them; each skipped when its marker says it is already there."""
    folder, marker = os.path.join(work, "folder"), os.path.join(work, "folder.json")
    made = {"images": n, "classes": classes, "size": SIZE, "shapes": SHAPES}
    if not _marked(marker, made):
        shutil.rmtree(folder, ignore_errors=True)
        for k in range(classes):
            os.makedirs(os.path.join(folder, f"class{k}"))
        start = time.perf_counter()
        jobs = [(folder, a, min(a + 1000, n), classes) for a in range(0, n, 1000)]
        with multiprocessing.Pool(workers) as pool:
            done = 0
            for count in pool.imap_unordered(_write_pngs, jobs):
                done += count
                print(f"  wrote {done:,} / {n:,} PNGs", file=sys.stderr, flush=True)
        _mark(marker, made)
        print(f"generated {n:,} PNGs in {time.perf_counter() - start:.0f} s", file=sys.stderr)
    else:
        print(f"reusing the {n:,} PNGs of {folder}", file=sys.stderr)

    arrays, npz_marker = os.path.join(work, "arrays.npz"), os.path.join(work, "arrays.json")
    if not _marked(npz_marker, made):
        from zoo import data

        start = time.perf_counter()
        with multiprocessing.Pool(workers) as pool:
            parts = {}
            for split in data.SPLITS:  # the folder's own split: the same test images
                ids = sorted(int(os.path.basename(f)[:-4]) for f in data.open_split(folder, split).files)
                chunks = pool.map(_images_job, [(ids[a:a + 1000], classes) for a in range(0, len(ids), 1000)])
                parts[f"x_{split}"] = np.concatenate(chunks)
                parts[f"y_{split}"] = np.asarray(ids, np.int64) % classes
        from PIL import Image  # the PNGs hold these very pixels

        for i in np.random.default_rng(0).choice(n, min(n, 20), replace=False):
            if not np.array_equal(np.asarray(Image.open(_path(folder, i, classes))), make_image(int(i), classes)[0]):
                raise SystemExit(f"error: {_path(folder, i, classes)} differs from image {i}; delete {work} and rerun")
        np.savez(arrays, **parts)
        _mark(npz_marker, made)
        print(f"saved {arrays} in {time.perf_counter() - start:.0f} s", file=sys.stderr)


def _images_job(job):
    return _images(*job)


def _marked(marker, made):
    try:
        with open(marker) as f:
            return json.load(f) == json.loads(json.dumps(made))
    except (OSError, ValueError):
        return False


def _mark(marker, made):
    with open(marker, "w") as f:
        json.dump(made, f)


def _bytes(path):
    if os.path.isfile(path):
        return os.path.getsize(path)
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def _busy_seconds():
    """CPU seconds the whole machine has been busy since boot (/proc/stat), all cores together."""
    with open("/proc/stat") as f:
        user, nice, system, idle, iowait, irq, softirq, steal = map(int, f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _memory(pid):
    """`(resident, peak resident)` bytes of process `pid` now, from /proc (zeros once it has exited).
    Its peak, unlike `ru_maxrss`, starts afresh at exec."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in f if line.startswith("Vm")}
    except OSError:
        return 0, 0
    return fields.get("VmRSS", 0), fields.get("VmHWM", 0)


def _logged(log, mark):
    with open(log, errors="replace") as f:
        return any(line.startswith(mark) for line in f)


def run_child(command, log, max_rss, mark=None):
    """Runs `command` (output to the file `log`); returns its exit code, wall seconds, peak RSS in
    bytes, the cores other processes kept busy meanwhile, whether it was killed at `max_rss`, and,
    with `mark`, its peak RSS when a line starting with `mark` first showed in the log (read every
    0.25 s)."""
    busy, start = _busy_seconds(), time.perf_counter()
    with open(log, "w") as out:
        child = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    over, done, marked = threading.Event(), threading.Event(), []

    def watch():
        while not done.wait(0.25):
            resident, peak = _memory(child.pid)
            if resident > max_rss:
                over.set()
                os.kill(child.pid, signal.SIGKILL)
                return
            if mark and not marked and _logged(log, mark):
                marked.append(peak)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: its pid stays its own
    done.set()
    watcher.join()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - start
    others = (_busy_seconds() - busy - usage.ru_utime - usage.ru_stime) / seconds
    return {"code": child.returncode, "seconds": seconds, "peak": usage.ru_maxrss * 1024,
            "others": max(others, 0.0), "killed": over.is_set(), "log": log,
            "marked": marked[0] if marked else None}


def measure_pipeline(source, args, result):
    """In the child: one epoch of the recipe's training batches from `source`, without a model."""
    import zoo

    zoo.import_tensorflow()
    from zoo import data, training

    split = data.open_split(source, "train", image_size=SIZE, channels=3, seed=args.seed)
    part, _ = split.holdout(args.validation_split, args.seed)
    batches = training.batches(part, args.batch_size, conditional=False, shuffle=True, seed=args.seed)
    warmup = min(args.warmup, part.count // args.batch_size // 4)
    stream = iter(batches)
    for _ in range(warmup):
        next(stream)
    start, timed = time.perf_counter(), 0
    for x in stream:
        timed += int(x.shape[0])
    seconds = time.perf_counter() - start
    with open(result, "w") as f:
        json.dump({"images": part.count, "timed": timed, "seconds": seconds,
                   "images_per_second": timed / seconds}, f)


def pipeline(name, source, args, max_rss):
    with tempfile.NamedTemporaryFile(suffix=".json", dir=args.work) as result:
        child = run_child([sys.executable, os.path.abspath(__file__), "--work", args.work, "--batch-size",
                           str(args.batch_size), "--seed", str(args.seed), "--validation-split",
                           str(args.validation_split), "--warmup", str(args.warmup), "--child-pipeline", source,
                           "--child-result", result.name],
                          os.path.join(args.work, "logs", f"pipeline-{name}.log"), max_rss)
        if child["code"] == 0:
            with open(result.name) as f:
                child.update(json.load(f))
    return child


def train_epoch(name, source, args, max_rss):
    out = os.path.join(args.work, "runs", name)
    child = run_child([sys.executable, os.path.join(ROOT, "recipes", "train_vae.py"), "--dataset", source,
                       "--image-size", str(SIZE), "--channels", "3", "--epochs", "1", "--nll-samples", "0",
                       "--width", str(args.width), "--latent-dim", str(args.latent_dim),
                       "--batch-size", str(args.batch_size), "--seed", str(args.seed),
                       "--validation-split", str(args.validation_split), "--out", out, "--overwrite"],
                      os.path.join(args.work, "logs", f"train-{name}.log"), max_rss, mark="test: ")
    if child["code"] == 0:
        with open(os.path.join(out, "manifest.json")) as f:
            manifest = json.load(f)
        child.update(images=manifest["dataset"]["train"], binarize=manifest["dataset"]["binarize"],
                     likelihood=manifest["config"].get("likelihood"),
                     images_per_second=manifest["metrics"]["train_images_per_second"])
    return child


def _failed(child):
    if child["killed"]:
        return f"killed at {child['peak'] / GIB:.1f} GiB (--max-rss)"
    return f"failed (exit {child['code']}, see {child['log']})"


def _gib(child):
    return f"{child['peak'] / GIB:.2f}" + (" (killed)" if child["killed"] else "")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=100_000, help="PNGs to generate (default: %(default)s)")
    parser.add_argument("--classes", type=int, default=4, help="class subfolders (default: %(default)s)")
    parser.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "vae-zoo-data-pipeline"),
                        help="folder for the images, records, arrays, runs and logs (default: %(default)s)")
    parser.add_argument("--shards", type=int, default=16, help="TFRecord shards per split (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=32, help="the recipe's default (default: %(default)s)")
    parser.add_argument("--width", type=int, default=32, help="the VAE's first conv filters (default: %(default)s)")
    parser.add_argument("--latent-dim", type=int, default=16, help="(default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="(default: %(default)s)")
    parser.add_argument("--validation-split", type=float, default=0.1, help="(default: %(default)s)")
    parser.add_argument("--warmup", type=int, default=20,
                        help="untimed batches before the pipeline's clock starts (default: %(default)s)")
    parser.add_argument("--max-rss", type=float, default=None,
                        help="GiB: kill a child whose resident memory passes it "
                             "(default: 8, or half of MemAvailable if less)")
    parser.add_argument("--sources", default="folder,records,arrays", help="(default: %(default)s)")
    parser.add_argument("--child-pipeline", help=argparse.SUPPRESS)
    parser.add_argument("--child-result", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.work = os.path.abspath(args.work)
    if args.child_pipeline:
        measure_pipeline(args.child_pipeline, args, args.child_result)
        return 0
    sources = [s for s in args.sources.split(",") if s]
    if args.images < 20 or not 1 <= args.classes <= args.images // 10:
        print(f"error: expected --images >= 20 and --classes from 1 to --images / 10, received {args.images} and "
              f"{args.classes}", file=sys.stderr)
        return 2
    if not sources or not set(sources) <= {"folder", "records", "arrays"}:
        print(f"error: expected --sources from folder,records,arrays, received {args.sources!r}", file=sys.stderr)
        return 2
    if not os.access("/proc/stat", os.R_OK):
        print("error: this benchmark reads /proc (Linux)", file=sys.stderr)
        return 2
    os.makedirs(os.path.join(args.work, "logs"), exist_ok=True)
    if args.max_rss is None:
        with open("/proc/meminfo") as f:
            available = next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        args.max_rss = min(8.0, 0.5 * available / GIB)
    max_rss = int(args.max_rss * GIB)

    # Made in a child: Linux starts a child's ru_maxrss at its parent's peak, so this parent stays small.
    maker = multiprocessing.get_context("fork").Process(
        target=generate, args=(args.work, args.images, args.classes, os.cpu_count() or 1))
    maker.start()
    maker.join()
    if maker.exitcode:
        print(f"error: generating the images failed (exit {maker.exitcode})", file=sys.stderr)
        return 1
    folder, arrays = os.path.join(args.work, "folder"), os.path.join(args.work, "arrays.npz")
    parent_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    records = os.path.join(args.work, "records")
    packing = run_child([sys.executable, "-m", "zoo.data", "pack", folder, records, "--shards", str(args.shards),
                         "--overwrite"], os.path.join(args.work, "logs", "pack.log"), max_rss)
    if packing["code"]:
        print(f"error: packing {_failed(packing)}", file=sys.stderr)
        return 1
    paths = {"folder": folder, "records": records, "arrays": arrays}

    rows = {}
    for name in sources:
        print(f"measuring {name}: pipeline ...", file=sys.stderr, flush=True)
        pipe = pipeline(name, paths[name], args, max_rss)
        print(f"measuring {name}: one training epoch ...", file=sys.stderr, flush=True)
        rows[name] = pipe, train_epoch(name, paths[name], args, max_rss)

    import zoo

    tf = zoo.import_tensorflow()
    import keras

    x_bytes = args.images * SIZE * SIZE * 3
    print(f"\n{args.images:,} {SIZE}x{SIZE} RGB PNGs in {args.classes} classes: {_bytes(folder) / 2**20:,.0f} MiB "
          f"in {folder}; {_bytes(records) / 2**20:,.0f} MiB as {args.shards} TFRecord shards per split; "
          f"{_bytes(arrays) / 2**20:,.0f} MiB as uint8 arrays in {arrays} ({x_bytes * 4 / 1e9:.2f} GB as float32).")
    print(f"pack: {packing['seconds']:.0f} s ({args.images / packing['seconds']:,.0f} images/s, both splits), "
          f"peak RSS {packing['peak'] / GIB:.2f} GiB, other processes {packing['others']:.1f} cores.")
    print(f"model: vae, width {args.width}, latent {args.latent_dim}, batch {args.batch_size}, one epoch; "
          f"a child is killed above --max-rss {args.max_rss:.1f} GiB; the parent's peak RSS, where each "
          f"child's starts, is {parent_peak / GIB:.2f} GiB\n")
    print("| source | training images | pipeline images/s | training images/s | pipeline / training | "
          "peak RSS (GiB): pipeline alone | training (fit, test loss) | whole recipe (with its evaluation) | "
          "other processes' CPU (cores): pipeline / recipe |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    names = {"folder": "folder of PNGs", "records": f"TFRecords ({args.shards} shards)",
             "arrays": "in-memory arrays (.npz)"}
    for name, (pipe, train) in rows.items():
        speed = f"{pipe['images_per_second']:,.0f}" if pipe["code"] == 0 else _failed(pipe)
        trained = f"{train['images_per_second']:,.0f}" if train["code"] == 0 else _failed(train)
        ratio = f"{pipe['images_per_second'] / train['images_per_second']:.1f}" \
            if pipe["code"] == 0 and train["code"] == 0 else "-"
        images = f"{train['images']:,}" if train["code"] == 0 else "-"
        fitted = "-" if train["marked"] is None else f"{train['marked'] / GIB:.2f}"
        print(f"| {names[name]} | {images} | {speed} | {trained} | {ratio} | {_gib(pipe)} | {fitted} | {_gib(train)} | "
              f"{pipe['others']:.1f} / {train['others']:.1f} |")
    print()
    for name, (pipe, train) in rows.items():
        if train["code"] == 0 and train["binarize"] != "none":
            print(f"- note: {names[name]}: the recipe chose the {train['likelihood']} likelihood and binarized "
                  f"({train['binarize']}); the pipeline column did not")
        if name in ("folder", "records"):
            for what, peak in (("training (fit, test loss)", train["marked"]), ("the whole recipe", train["peak"])):
                ok = train["code"] == 0 and peak is not None and peak < RSS_LIMIT_GIB * GIB
                print(f"- {names[name]}: peak RSS of {what} under {RSS_LIMIT_GIB} GiB: {'yes' if ok else 'NO'}")
        if pipe["code"] == 0 and train["code"] == 0:
            ok = pipe["images_per_second"] >= SPEEDUP * train["images_per_second"]
            print(f"- {names[name]}: pipeline at least {SPEEDUP:g}x training's images/s: {'yes' if ok else 'NO'}")
    print(f"\nmachine: {common.machine(tf, keras)}\ncommand: {common.command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
