"""Training speed: the zoo's VAE loop against a plain Keras `fit` of the same networks.

Both models share the zoo's encoder/decoder builders, the data pipeline, the optimizer and the
batch size. The plain model writes the ELBO by hand (softplus scales, reparameterisation,
sigmoid cross-entropy, closed-form KL) in a keras-io style `train_step`; the zoo builds it from
TFP distributions. Epochs alternate between the two (`common.images_per_second`), so that machine
noise hits both alike.

    python benchmarks/train_loop.py --epochs 5 --batch-size 32
    python benchmarks/train_loop.py --dataset openmoji --backbone resnet --width 32 --epochs 5

Both loops score the pixels with sigmoid cross-entropy (the zoo's Bernoulli likelihood), also on
colour images, so that only the loop differs; on colour images a third row is the zoo's VAE with
its colour default, the discretized logistic mixture, to show what that likelihood costs.
Prints a markdown table of images/s (median over the timed epochs) and one of network costs.
"""

import argparse

import numpy as np

import common
import zoo

tf = zoo.import_tensorflow()  # quietly, before Keras loads it
import keras  # noqa: E402

from zoo import data, distributions, networks  # noqa: E402


class PlainVAE(keras.Model):
    """The same VAE written as a plain Keras model: tensors and formulas, no TFP."""

    def __init__(self, input_shape, latent_dim, width, backbone="conv"):
        super().__init__()
        self.encoder = networks.encoder(input_shape, 2 * latent_dim, width=width, backbone=backbone)
        self.decoder = networks.decoder(latent_dim, input_shape, width=width, backbone=backbone)
        self.loss_tracker = keras.metrics.Mean(name="loss")

    @property
    def metrics(self):
        return [self.loss_tracker]

    def train_step(self, x):
        with tf.GradientTape() as tape:
            loc, raw = tf.split(self.encoder(x), 2, axis=-1)
            scale = tf.nn.softplus(raw) + distributions.MIN_SCALE
            z = loc + scale * tf.random.normal(tf.shape(loc))
            logits = self.decoder(z)
            rec = tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=x, logits=logits), [1, 2, 3])
            kl = 0.5 * tf.reduce_sum(tf.square(scale) + tf.square(loc) - 1.0 - 2.0 * tf.math.log(scale), 1)
            loss = tf.reduce_mean(rec + kl)
        grads = tape.gradient(loss, self.trainable_weights)
        self.optimizer.apply(grads, self.trainable_weights)
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}


def layer_flops(layer):
    """Multiply-adds x 2 of one conv / dense layer for one image (activations and biases ignored)."""
    if isinstance(layer, keras.layers.Dense):
        return 2 * layer.input.shape[-1] * layer.units
    if isinstance(layer, keras.layers.Conv2DTranspose):  # every input pixel scatters a kernel
        _, h, w, c = layer.input.shape
        return 2 * h * w * c * layer.filters * np.prod(layer.kernel_size)
    if isinstance(layer, keras.layers.Conv2D):
        _, h, w, _ = layer.output.shape
        return 2 * h * w * layer.input.shape[-1] * layer.filters * np.prod(layer.kernel_size)
    return 0


def cost_rows(model):
    rows = []
    for net in (model.encoder, model.decoder):
        rows.append((net.name, net.count_params(), sum(layer_flops(layer) for layer in net.layers)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--epochs", type=int, default=5, help="timed epochs per loop (after one warm-up epoch)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--latent-dim", type=int, default=16)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--backbone", choices=networks.BACKBONES, default="conv")
    args = parser.parse_args()

    keras.utils.set_random_seed(0)
    x, _ = data.load(args.dataset, "train")
    colour = x.shape[-1] > 1
    ds = data.pipeline(x, batch_size=args.batch_size, shuffle=True, dynamic_binarization=not colour)
    sizes = dict(input_shape=x.shape[1:], latent_dim=args.latent_dim, width=args.width, backbone=args.backbone)
    models = {
        "zoo VAE (TFP distributions, LatentVariableModel.train_step)": zoo.create("vae", **sizes),
        "plain Keras fit (hand-written ELBO)": PlainVAE(x.shape[1:], args.latent_dim, args.width, args.backbone),
    }
    if colour:
        models["zoo VAE, discretized logistic mixture"] = zoo.create("vae", likelihood="logistic_mixture", **sizes)
    for model in models.values():
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
    speed = common.images_per_second(models, ds, len(x), args.epochs)

    print(f"machine: {common.machine(tf, keras)}")
    print(f"command: {common.command()}\n")
    base = speed[list(models)[1]]
    print("| training loop | images/s (median) | relative to plain Keras |")
    print("|---|---:|---:|")
    for name in models:
        print(f"| {name} | {speed[name]:,.0f} | {speed[name] / base:.2f} |")
    print(f"\n| network ({args.dataset}, {args.backbone}, latent {args.latent_dim}) | parameters | FLOPs per image |")
    print("|---|---:|---:|")
    for name, params, flops in cost_rows(models[list(models)[0]]):
        print(f"| {name} | {params:,} | {flops / 1e6:.1f} M |")


if __name__ == "__main__":
    main()
