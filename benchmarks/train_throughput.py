"""Training throughput (images/s) against the global batch size and the tf.distribute strategy.

Strategies: the default one-device strategy, and `mirrored` over the GPUs or, without GPUs, over
`--cpu-devices` logical CPU devices. Each cell builds the recipe's model and optimizer with
`zoo.training.build_model` under the strategy, runs one untimed epoch (tracing), then times
`--epochs` epochs of `fit` over `--images` mnist5k training images, the strategies taking turns
epoch by epoch, and reports the median.

    python benchmarks/train_throughput.py --batch-sizes 32,64,128,256 --cpu-devices 2 --epochs 3

On a CPU the logical devices share the same cores, so `mirrored` measures the cost of the
distributed code path (splitting each batch, all-reducing the gradients), not a speed-up; on a
machine with several GPUs the same command measures the scaling. Prints a markdown table with the
machine and the command.
"""

import argparse
import sys

import keras
import tensorflow as tf

import common
from zoo import data, distribute, training


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", default="vae")
    parser.add_argument("--batch-sizes", default="32,64,128,256", help="global batch sizes, comma-separated")
    parser.add_argument("--cpu-devices", type=int, default=2, help="logical CPU devices for mirrored without GPUs")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs per cell (after one warm-up epoch)")
    parser.add_argument("--images", type=int, default=2000, help="training images per epoch")
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    return parser.parse_args()


def main():
    args = parse_args()
    # Logical devices exist only if made before TensorFlow starts: the strategy comes first.
    mirrored = distribute.make_strategy("mirrored", cpu_devices=args.cpu_devices)
    x = data.load("mnist5k", "train")[0][: args.images]
    strategies = {"default (1 device)": tf.distribute.get_strategy(),
                  f"mirrored ({mirrored.num_replicas_in_sync} replicas)": mirrored}
    batches = [int(b) for b in args.batch_sizes.split(",")]
    speed = {}
    for batch in batches:
        dataset = data.pipeline(x, batch_size=batch, shuffle=True, dynamic_binarization=True)
        models = {}
        for name, strategy in strategies.items():
            keras.utils.set_random_seed(0)
            models[name] = training.build_model(args.variant, strategy, input_shape=x.shape[1:],
                                                latent_dim=args.latent_dim, width=args.width,
                                                steps=(args.epochs + 1) * len(x) // batch)
        for name, value in common.images_per_second(models, dataset, len(x), args.epochs).items():
            speed[name, batch] = value
            print(f"  {name}, batch {batch}: {value:,.0f} images/s", file=sys.stderr, flush=True)

    gpus = [d.name for d in tf.config.list_physical_devices("GPU")]
    print(f"machine: {common.machine(tf, keras)}; {', '.join(gpus) if gpus else 'no GPU'}")
    print(f"command: {common.command()}")
    print(f"model: {args.variant}, width {args.width}, latent {args.latent_dim}; {len(x)} mnist5k images per epoch, "
          f"median of {args.epochs} epochs\n")
    names = list(strategies)
    print("| global batch | " + " | ".join(f"{n} images/s" for n in names) + " | mirrored / default |")
    print("|---:|" + "---:|" * len(names) + "---:|")
    for batch in batches:
        cells = [speed[n, batch] for n in names]
        print(f"| {batch} | " + " | ".join(f"{c:,.0f}" for c in cells) + f" | {cells[1] / cells[0]:.2f} |")


if __name__ == "__main__":
    main()
