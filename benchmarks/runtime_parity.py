"""Checks `export.runtime.load_model` against a run's SavedModel across two Python environments.

With the zoo installed, `--write REF.npz` saves test images, labels and what the SavedModel's
`reconstruct` signature and `decode` of the posterior mean with other labels (restyle) give for
them. In an environment with only numpy and onnxruntime / ai-edge-litert, `--check REF.npz` runs
the exported files on the same inputs and prints the largest difference per format against the
parity tolerances of `python -m export` (exit 1 when one is over).

    python benchmarks/runtime_parity.py runs/cvae --write /tmp/reference.npz
    /tmp/venv-rt/bin/python benchmarks/runtime_parity.py runs/cvae --check /tmp/reference.npz
"""

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TOLERANCES = {"onnx": 1e-5, "tflite": 1e-4}  # export.formats' decoder tolerances, without importing TensorFlow


def write_reference(run_dir, path, n=256):
    import zoo

    tf = zoo.import_tensorflow()
    from zoo import artifacts, data

    x, y = data.load(artifacts.read_manifest(run_dir)["dataset"]["name"], "test")
    x, y = x[:n], y[:n].astype(np.int32)
    signatures = tf.saved_model.load(os.path.join(run_dir, artifacts.SAVED_MODEL_DIR)).signatures
    conditional = "labels" in signatures["reconstruct"].structured_input_signature[1]
    feeds = {"x": tf.constant(x), **({"labels": tf.constant(y)} if conditional else {})}
    reference = {"x": x, "reconstruct": signatures["reconstruct"](**feeds)["mean"].numpy()}
    if conditional:
        reference["labels"] = y
        to_labels = (y + 1) % (int(y.max()) + 1)
        z = signatures["encode"](**feeds)["loc"]
        restyled = signatures["decode"](z=z, labels=tf.constant(to_labels))["mean"].numpy()
        reference.update(to_labels=to_labels, restyle=restyled)
    np.savez(path, **reference)
    print(f"wrote {path}: {len(x)} images")


def check(run_dir, path):
    from export.runtime import load_model

    reference, failed = dict(np.load(path)), False
    labels = reference.get("labels")
    for fmt, tolerance in TOLERANCES.items():
        model = load_model(run_dir, fmt)
        errors = {"reconstruct": model.reconstruct(reference["x"], labels) - reference["reconstruct"]}
        if "restyle" in reference:
            errors["restyle"] = model.restyle(reference["x"], labels, reference["to_labels"]) - reference["restyle"]
        for name, error in errors.items():
            worst = float(np.abs(error).max())
            failed |= worst > tolerance
            print(f"{fmt:7s} {name:12s} max abs {worst:.2e} (tolerance {tolerance:g}) "
                  f"{'ok' if worst <= tolerance else 'OVER'}")
    heavy = sorted(m for m in ("tensorflow", "keras", "tensorflow_probability") if m in sys.modules)
    print(f"loaded without {', '.join(('tensorflow', 'keras', 'tensorflow_probability'))}: {not heavy}")
    return int(failed)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", help="a run exported with `python -m export RUN_DIR --parts decoder,encoder`")
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--write", metavar="REF.npz", help="write the SavedModel's outputs (needs the zoo)")
    mode.add_argument("--check", metavar="REF.npz", help="compare the exported files with them (numpy + runtimes)")
    args = parser.parse_args(argv)
    if args.write:
        write_reference(args.run_dir, args.write)
        return 0
    return check(args.run_dir, args.check)


if __name__ == "__main__":
    sys.exit(main())
