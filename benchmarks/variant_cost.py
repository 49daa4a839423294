"""Training cost of variants against each other: the images/s of each, in one process.

Each variant is built as its recipe builds it with no flags (the likelihood picked from the data,
the resnet backbone at width 32) and trained with `fit` on the same images, the models taking
turns epoch by epoch (`common.images_per_second`), so that a busy machine slows them alike and the
ratio holds where the absolute numbers do not:

    python benchmarks/variant_cost.py --variants vae,vaegan --dataset mnist5k
    python benchmarks/variant_cost.py --variants vae,vaegan --dataset openmoji --image-size 32

Prints a markdown table with the machine and the command.
"""

import argparse
import sys

import keras
import tensorflow as tf

import common
from zoo import data, likelihoods, training


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", default="vae,vaegan", help="registered model names, comma-separated")
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per variant (after one warm-up epoch)")
    parser.add_argument("--images", type=int, default=1000, help="training images per epoch")
    return parser.parse_args()


def main():
    args = parse_args()
    x = data.open_split(args.dataset, "train", image_size=args.image_size).arrays(limit=args.images, seed=0)[0]
    likelihood, _ = likelihoods.choose(x, "auto")
    dataset = data.pipeline(x, batch_size=args.batch_size, shuffle=True)
    networks = training.choose_networks(x.shape[1:], {}, print_fn=lambda *a, **k: None)
    models = {}
    for variant in args.variants.split(","):
        keras.utils.set_random_seed(0)
        models[variant] = training.build_model(variant, input_shape=x.shape[1:], likelihood=likelihood,
                                               steps=(args.epochs + 1) * len(x) // args.batch_size, **networks)
    speed = common.images_per_second(models, dataset, len(x), args.epochs)
    print(f"machine: {common.machine(tf, keras)}")
    print(f"command: {common.command()}")
    print(f"data: {len(x)} {args.dataset} images of {'x'.join(map(str, x.shape[1:]))}, {likelihood} likelihood, "
          f"batch {args.batch_size}; median of {args.epochs} epochs\n")
    first = next(iter(speed.values()))
    print("| variant | parameters | images/s | time per image, relative |")
    print("|---|---:|---:|---:|")
    for name, value in speed.items():
        print(f"| `{name}` | {models[name].count_params():,} | {value:,.0f} | {first / value:.2f} |")


if __name__ == "__main__":
    sys.exit(main())
