"""Backbones (issue 20): the conv backbone against the residual one with each norm, on a VAE.

For each dataset, one `zoo.create("vae", ...)` per backbone: conv (at --conv-width), and resnet
(at --width, --depth) with each of `zoo.networks.NORMS`, all with the same seed, likelihood
(`zoo.likelihoods.choose`: the logistic mixture for OpenMoji's colour, Bernoulli for mnist5k),
latent size, batch size and Adam. They train on the same --images training images, taking turns
epoch by epoch (`common.images_per_second`, one untimed first epoch, then --epochs timed ones), and
are scored on the same test images. It prints a markdown table per dataset: parameters, forward
MFLOPs per image (encoder + decoder, counted as benchmarks/train_loop.py counts them), training
images/s, and the test negative ELBO (nats per image, and bits/dim).

    python benchmarks/backbones.py --epochs 10 --images 4000 --dataset openmoji,mnist5k
    python benchmarks/backbones.py --epochs 1 --images 256       # a quick smoke run
"""

import argparse

import numpy as np

import common
import zoo

tf = zoo.import_tensorflow()  # quietly, before Keras loads it
import keras  # noqa: E402

from train_loop import layer_flops  # noqa: E402
from zoo import data, likelihoods, networks  # noqa: E402


def configs(args):
    """`{label: zoo.create overrides}`: the conv backbone, then resnet with each norm."""
    found = {"conv": dict(backbone="conv", width=args.conv_width)}
    for norm in networks.NORMS:
        found[f"resnet, norm {norm}"] = dict(backbone="resnet", width=args.width, depth=args.depth, norm=norm)
    return found


def subset(name, split, count, seed=0):
    """`count` images of a split (all when it has fewer), drawn with a fixed seed."""
    x, _ = data.load(name, split)
    pick = np.sort(np.random.default_rng(seed).permutation(len(x))[:count])
    return x[pick]


def forward_flops(model):
    """FLOPs per image of the encoder and the decoder together."""
    return sum(layer_flops(layer) for net in (model.encoder, model.decoder) for layer in net.layers)


def measure(name, args):
    """The table rows of one dataset: `(label, parameters, MFLOPs, images/s, test -ELBO, bits/dim)`."""
    x, x_test = subset(name, "train", args.images), subset(name, "test", args.test_images)
    likelihood, _ = likelihoods.choose(x)
    train = data.pipeline(x, batch_size=args.batch_size, shuffle=True, dynamic_binarization=likelihood == "bernoulli")
    test = data.pipeline(data.binarize(x_test) if likelihood == "bernoulli" else x_test, batch_size=args.batch_size)
    models = {}
    for label, options in configs(args).items():
        keras.utils.set_random_seed(args.seed)
        models[label] = zoo.create("vae", input_shape=x.shape[1:], latent_dim=args.latent_dim, likelihood=likelihood,
                                   **options)
        models[label].compile(optimizer=keras.optimizers.Adam(args.learning_rate))
    speed = common.images_per_second(models, train, len(x), args.epochs)
    rows = []
    for label, model in models.items():
        nelbo = model.evaluate(test, verbose=0, return_dict=True)["loss"]
        rows.append((label, model.count_params(), forward_flops(model) / 1e6, speed[label], nelbo,
                     nelbo / (np.prod(x.shape[1:]) * np.log(2))))
    return likelihood, x.shape[1:], rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="openmoji,mnist5k", help="comma-separated dataset names")
    parser.add_argument("--epochs", type=int, default=10, help="timed epochs per model (after one warm-up epoch)")
    parser.add_argument("--images", type=int, default=4000, help="training images (a fixed random subset)")
    parser.add_argument("--test-images", type=int, default=1000)
    parser.add_argument("--width", type=int, default=32, help="the residual backbone's first-level filters")
    parser.add_argument("--conv-width", type=int, default=64, help="the conv backbone's first-level filters")
    parser.add_argument("--depth", type=int, default=1, help="residual blocks per level")
    parser.add_argument("--latent-dim", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    print(f"machine: {common.machine(tf, keras)}")
    print(f"command: {common.command()}")
    for name in args.dataset.split(","):
        likelihood, shape, rows = measure(name, args)
        print(f"\n{name} ({'x'.join(map(str, shape))}, {args.images} training images, {likelihood} likelihood, "
              f"latent {args.latent_dim}, {args.epochs} + 1 epochs)\n")
        print("| backbone | parameters | forward MFLOPs / image | training images/s | test -ELBO (nats) | bits/dim |")
        print("|---|---:|---:|---:|---:|---:|")
        for label, params, mflops, speed, nelbo, bpd in rows:
            print(f"| {label} | {params:,} | {mflops:,.0f} | {speed:,.0f} | {nelbo:,.1f} | {bpd:.3f} |")


if __name__ == "__main__":
    main()
