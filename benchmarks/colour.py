"""Colour images (issue 20): the zoo's VAE on OpenMoji against a keras-io conv VAE, and PNG's rate.

One run of this script trains, in turn (never at once, so neither slows the other):
- the zoo: `python recipes/train_vae.py --dataset openmoji --seed S --out OUT`, with no other flag
  (`--epochs N` only when given here), so it shows the recipe's own colour defaults;
- the VAE of keras-io's examples/generative/vae.py (two stride-2 convs, Dense(16), the
  reparameterisation, a mirrored transposed-conv decoder with a sigmoid, Bernoulli cross-entropy
  plus KL, Adam), adapted to the run's image shape, with the run's latent size, batch size and
  epochs, on exactly the run's training images (its validation images held out alike).

Then it scores both on the same test images: reconstruction PSNR (of the decoded posterior mean),
bits/dim (the zoo's importance-sampled NLL, from the run's manifest; keras-io's continuous BCE
gives none), and the bits/dim of the test images themselves as PNG files (Pillow, optimize=True),
the rate of a lossless codec. It draws 64 samples of each side by side and the reconstructions of
the same 8 test images, prints a markdown table and writes the results as JSON.

    python benchmarks/colour.py                       # trains runs/vae-openmoji, then keras-io
    python benchmarks/colour.py --reuse               # scores the finished run, trains keras-io
    python benchmarks/colour.py --reuse --out R --epochs 1 --images 256   # a quick smoke run
"""

import argparse
import io
import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

import common
import zoo

tf = zoo.import_tensorflow()  # quietly, before Keras loads it
import keras  # noqa: E402

from zoo import data, evaluate, viz  # noqa: E402
from zoo import metrics as zoo_metrics  # noqa: E402
from zoo.grid import mosaic  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLES, RECONSTRUCTED = 64, 8  # images in each sample grid; test images reconstructed
PSNR_TOLERANCE = 0.05  # dB between the manifest's PSNR and the one recomputed here
SAMPLES_FILE, RECONSTRUCTIONS_FILE = "colour-samples.png", "colour-reconstructions.png"


# --- keras-io's VAE -----------------------------------------------------------------------------

class Sampling(keras.layers.Layer):
    """Uses (z_mean, z_log_var) to sample z (keras-io's layer, with a seed generator)."""

    def __init__(self, seed=1337, **kwargs):
        super().__init__(**kwargs)
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, inputs):
        z_mean, z_log_var = inputs
        epsilon = keras.random.normal(keras.ops.shape(z_mean), seed=self.seed_generator)
        return z_mean + keras.ops.exp(0.5 * z_log_var) * epsilon


class KerasIoVAE(keras.Model):
    """keras-io's VAE: a `train_step` with the BCE reconstruction plus the closed-form KL.

    keras-io sums `binary_crossentropy` over H and W, and that function averages the last axis,
    there a single grey channel; here the cross-entropy is summed over the colour channels too, so
    the loss stays the per-image negative ELBO of a Bernoulli decoder (averaging them would weight
    the KL three times as much: a weaker baseline).
    """

    def __init__(self, encoder, decoder, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.decoder = decoder
        self.total_loss_tracker = keras.metrics.Mean(name="total_loss")
        self.reconstruction_loss_tracker = keras.metrics.Mean(name="reconstruction_loss")
        self.kl_loss_tracker = keras.metrics.Mean(name="kl_loss")

    @property
    def metrics(self):
        return [self.total_loss_tracker, self.reconstruction_loss_tracker, self.kl_loss_tracker]

    def losses_of(self, data):
        """The batch means of the reconstruction term and the KL term, and their sum."""
        z_mean, z_log_var, z = self.encoder(data)
        reconstruction = self.decoder(z)
        bce = keras.losses.binary_crossentropy(data[..., None], reconstruction[..., None])  # per pixel and channel
        reconstruction_loss = tf.reduce_mean(tf.reduce_sum(bce, axis=(1, 2, 3)))
        kl_loss = -0.5 * (1 + z_log_var - tf.square(z_mean) - tf.exp(z_log_var))
        kl_loss = tf.reduce_mean(tf.reduce_sum(kl_loss, axis=1))
        return reconstruction_loss, kl_loss, reconstruction_loss + kl_loss

    def train_step(self, data):
        with tf.GradientTape() as tape:
            reconstruction_loss, kl_loss, total_loss = self.losses_of(data)
        grads = tape.gradient(total_loss, self.trainable_weights)
        self.optimizer.apply_gradients(zip(grads, self.trainable_weights))
        self.total_loss_tracker.update_state(total_loss)
        self.reconstruction_loss_tracker.update_state(reconstruction_loss)
        self.kl_loss_tracker.update_state(kl_loss)
        return {"loss": self.total_loss_tracker.result(),
                "reconstruction_loss": self.reconstruction_loss_tracker.result(),
                "kl_loss": self.kl_loss_tracker.result()}

    def call(self, x):
        """Reconstructs through the posterior mean: decoder(z_mean)."""
        z_mean, _, _ = self.encoder(x)
        return self.decoder(z_mean)


def keras_io_vae(image_shape, latent_dim, seed=1337):
    """The VAE of keras-io examples/generative/vae.py for `image_shape` (H and W divisible by 4).

    As keras-io writes it: the encoder gives z_mean, z_log_var and a sampled z; the decoder starts
    from a Dense layer to a (H/4, W/4, 64) map and ends in a sigmoid with C channels.
    """
    h, w, c = image_shape
    if h % 4 or w % 4:
        raise ValueError("keras-io's VAE halves the image twice: expected H and W divisible by 4, "
                         f"received {image_shape}.")
    inputs = keras.Input(shape=image_shape)
    x = keras.layers.Conv2D(32, 3, activation="relu", strides=2, padding="same")(inputs)
    x = keras.layers.Conv2D(64, 3, activation="relu", strides=2, padding="same")(x)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(16, activation="relu")(x)
    z_mean = keras.layers.Dense(latent_dim, name="z_mean")(x)
    z_log_var = keras.layers.Dense(latent_dim, name="z_log_var")(x)
    z = Sampling(seed)([z_mean, z_log_var])
    encoder = keras.Model(inputs, [z_mean, z_log_var, z], name="encoder")

    latent = keras.Input(shape=(latent_dim,))
    x = keras.layers.Dense(h // 4 * w // 4 * 64, activation="relu")(latent)
    x = keras.layers.Reshape((h // 4, w // 4, 64))(x)
    x = keras.layers.Conv2DTranspose(64, 3, activation="relu", strides=2, padding="same")(x)
    x = keras.layers.Conv2DTranspose(32, 3, activation="relu", strides=2, padding="same")(x)
    outputs = keras.layers.Conv2DTranspose(c, 3, activation="sigmoid", padding="same")(x)
    decoder = keras.Model(latent, outputs, name="decoder")
    return KerasIoVAE(encoder, decoder)


def train_keras_io(model, x, *, epochs, batch_size, print_fn=print):
    """Trains as keras-io does (`fit` on the arrays, shuffled, Adam at its default rate); returns
    the median images/s over the epochs after the first (the first traces the step), or the
    first's when there is only one."""
    seconds = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            seconds.append(time.perf_counter() - self.start)
            print_fn(f"keras-io VAE epoch {epoch + 1}/{epochs}: loss {logs['loss']:.1f}  "
                     f"{len(x) / seconds[-1]:.0f} images/s", flush=True)

    model.compile(optimizer=keras.optimizers.Adam())
    model.fit(x, epochs=epochs, batch_size=batch_size, shuffle=True, callbacks=[Timer()], verbose=0)
    timed = seconds[1:] or seconds
    return len(x) / float(np.median(timed))


# --- measures -----------------------------------------------------------------------------------

def png_bits_per_dim(x):
    """Bits/dim of each image `[N, H, W, C]` in [0, 1] as an 8-bit PNG file (Pillow, optimize=True,
    headers included): 8 * bytes / (H W C). Their mean is also the rate of all the files together,
    since every image has H W C dimensions."""
    pixels = np.round(np.clip(np.asarray(x), 0, 1) * 255).astype(np.uint8)
    sizes = []
    for image in pixels:
        buffer = io.BytesIO()
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(buffer, format="PNG", optimize=True)
        sizes.append(buffer.tell())
    return 8.0 * np.asarray(sizes, np.float64) / float(np.prod(pixels.shape[1:]))


def batched(fn, x, batch_size=256):
    """`fn` (a model or a function of a batch giving a tensor) over `x` in batches, as numpy."""
    return np.concatenate([np.asarray(fn(x[i:i + batch_size])) for i in range(0, len(x), batch_size)])


def manifest_metric(metrics, prefix):
    """`(key, value)` of the manifest metric named `prefix`, or else of the first (sorted) key that
    starts with it (the zoo names some after their settings, e.g. `_k100`); `(None, None)` if none."""
    if prefix in metrics:
        return prefix, metrics[prefix]
    keys = sorted(k for k in metrics if k.startswith(prefix))
    return (keys[0], metrics[keys[0]]) if keys else (None, None)


# --- pictures -----------------------------------------------------------------------------------

def side_by_side_figure(panels, rows, cols, title=""):
    """One figure of titled image grids side by side; `panels` is `{title: images [rows * cols, H, W, C]}`."""
    cell = 0.45  # inches per image
    fig = Figure(figsize=(len(panels) * (cols * cell + 0.3), rows * cell + 1.1), layout="constrained")
    if title:
        fig.suptitle(title, fontsize=10)
    for i, (name, images) in enumerate(panels.items()):
        ax = fig.add_subplot(1, len(panels), i + 1)
        tile = mosaic(np.clip(images, 0, 1), rows, cols)
        ax.imshow(tile[..., 0] if tile.shape[-1] == 1 else tile, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_xticks([])
        ax.set_yticks([])
        for spine in ax.spines.values():
            spine.set_visible(False)
        ax.set_title(textwrap.fill(name, width=int(cols * cell * 13)), fontsize=10)
    return fig


# --- the two models ----------------------------------------------------------------------------

def train_zoo(args, print_fn=print):
    """Runs the recipe into `args.out` unless `--reuse`; returns the run's manifest and where its
    images/s came from. A finished run is never replaced: without `--reuse` it is an error."""
    manifest_path = os.path.join(args.out, "manifest.json")
    if args.reuse:
        if not os.path.exists(manifest_path):
            sys.exit(f"--reuse: {args.out} is not a finished run (no manifest.json); train it first, without --reuse.")
        source = f"the earlier run in {args.out}, not this process"
    else:
        if os.path.exists(manifest_path):
            sys.exit(f"{args.out} is already a finished run: pass --reuse to score it as it is, or another --out "
                     "to train a new one (this benchmark never replaces a finished run).")
        out = os.path.abspath(args.out)  # the recipe runs from the repository root: say OUT from there
        out = os.path.relpath(out, ROOT) if out.startswith(ROOT + os.sep) else out
        command = [sys.executable, "recipes/train_vae.py", "--dataset", "openmoji", "--seed", str(args.seed),
                   "--out", out] + (["--epochs", str(args.epochs)] if args.epochs else [])
        print_fn("zoo: " + " ".join(["python", *command[1:]]), flush=True)
        subprocess.run(command, cwd=ROOT, check=True)
        source = "this run (the recipe's subprocess)"
    with open(manifest_path) as f:
        return json.load(f), source


def split_options(manifest):
    """How the run read its images (`open_split`'s options), from its manifest's dataset section."""
    described = manifest.get("dataset", {})
    return {"image_size": described.get("image_size"), "channels": described.get("channels"),
            "fit": described.get("fit") or "crop", "skip_bad_files": bool(described.get("skipped"))}


def read_images(manifest, limit=None):
    """The run's training images (its validation images held out as the recipe holds them) and its
    test images (as the zoo's evaluation reads them), at most `limit` of each."""
    name, training = manifest["dataset"]["name"], manifest["training"]
    seed, options = training["seed"], split_options(manifest)
    train, _ = data.open_split(name, "train", seed=seed, **options).holdout(training["validation_split"], seed)
    x_train, _ = train.arrays(limit=limit, seed=seed)
    x_test, _ = data.open_split(name, "test", seed=seed, **options).arrays(
        limit=min(limit or evaluate.MAX_TEST_IMAGES, evaluate.MAX_TEST_IMAGES), seed=seed)
    return x_train, x_test


def score_zoo(args, manifest, x_test, print_fn=print):
    """The zoo run's row (its manifest's numbers; the PSNR also recomputed from the saved model, as a
    check), its reconstructions of `x_test` and its samples."""
    run_metrics, seed = manifest["metrics"], manifest.get("evaluation", {}).get("settings", {}).get("seed", args.seed)
    model = zoo.load_model(args.out)
    recon = batched(model, x_test)
    psnr_key, psnr = manifest_metric(run_metrics, "test_psnr")
    bpd_key, bpd = manifest_metric(run_metrics, "test_bits_per_dim")
    here = float(zoo_metrics.psnr(recon, x_test).mean())
    if psnr is None:
        print_fn("WARNING: the manifest has no test_psnr metric; using the PSNR recomputed here.", flush=True)
    elif args.images is None and abs(psnr - here) > PSNR_TOLERANCE:
        print_fn(f"WARNING: the manifest's {psnr_key} {psnr:.3f} dB and the PSNR recomputed from the saved "
                 f"model, {here:.3f} dB, differ by more than {PSNR_TOLERANCE} dB.", flush=True)
    row = {"run": args.out, "recipe_command": manifest["training"].get("command"),
           "parameters": int(model.count_params()), "latent_dim": int(manifest["config"]["latent_dim"]),
           "train_images_per_second": run_metrics.get("train_images_per_second"),
           # with --images the test set is a subset: both models' PSNR on it, as computed here
           "test_psnr_db": psnr if psnr is not None and args.images is None else here,
           "test_psnr_key": psnr_key if args.images is None else None, "test_psnr_db_recomputed": here,
           "test_bits_per_dim": bpd, "test_bits_per_dim_key": bpd_key,
           "run_samples_picture": os.path.join(args.out, "pictures", "samples.png")}
    return row, recon, np.asarray(model.sample(SAMPLES, seed=seed)), seed


def score_keras_io(args, x_train, x_test, *, latent_dim, epochs, batch_size, sample_seed, print_fn=print):
    """keras-io's row, trained here on `x_train` as the zoo was; its reconstructions of `x_test`
    (decoder(z_mean)) and its samples (decoder(z), z ~ N(0, I) drawn with `sample_seed`)."""
    keras.utils.set_random_seed(args.seed)
    model = keras_io_vae(x_train.shape[1:], latent_dim, seed=args.seed)
    speed = train_keras_io(model, x_train, epochs=epochs, batch_size=batch_size, print_fn=print_fn)
    recon = batched(model, x_test)
    z = np.random.default_rng(sample_seed).standard_normal((SAMPLES, latent_dim)).astype(np.float32)
    row = {"parameters": int(model.encoder.count_params() + model.decoder.count_params()), "latent_dim": latent_dim,
           "epochs": epochs, "batch_size": batch_size, "train_images_per_second": speed,
           "images_per_second_from": "this run", "test_psnr_db": float(zoo_metrics.psnr(recon, x_test).mean()),
           "test_bits_per_dim": None}
    return row, recon, np.asarray(model.decoder(z))


def draw(folder, x_test, recon, samples, *, zoo_title, seed, run_name):
    """Writes the side-by-side samples and the reconstructions (rows: input, zoo, keras-io); returns their paths.
    `recon` and `samples` are `(zoo, keras-io)` pairs."""
    os.makedirs(folder, exist_ok=True)
    paths = os.path.join(folder, SAMPLES_FILE), os.path.join(folder, RECONSTRUCTIONS_FILE)
    title = f"{SAMPLES} samples of each: z ~ N(0, I) (seed {seed}), decoded to the mean"
    viz.save(side_by_side_figure({zoo_title: samples[0], "keras-io VAE": samples[1]}, 8, 8, title), paths[0])
    pick = np.linspace(0, len(x_test) - 1, RECONSTRUCTED).astype(int)
    viz.save(viz.grid_figure(np.concatenate([x_test[pick], recon[0][pick], recon[1][pick]]), 3, RECONSTRUCTED,
                             f"Reconstructions of {RECONSTRUCTED} test images ({run_name})",
                             row_labels=["input", "zoo", "keras-io"]), paths[1])
    return list(paths)


def run(args, print_fn=print):
    """The whole benchmark; returns the results written as JSON."""
    manifest, speed_source = train_zoo(args, print_fn)
    training, run_metrics = manifest["training"], manifest["metrics"]
    epochs = int(run_metrics.get("epochs_trained") or training["epochs"])
    if args.reuse and args.epochs and args.epochs != training["epochs"]:
        print_fn(f"note: --epochs {args.epochs} is ignored with --reuse: the run trained {epochs} of its "
                 f"{training['epochs']} epochs, and keras-io trains as many", flush=True)
    x_train, x_test = read_images(manifest, args.images)
    print_fn(f"data: {len(x_train)} training and {len(x_test)} test images of {'x'.join(map(str, x_train.shape[1:]))}"
             f" (the run's: {manifest['dataset'].get('train')} train / {manifest['dataset'].get('test')} test)",
             flush=True)

    zoo_row, zoo_recon, zoo_samples, seed = score_zoo(args, manifest, x_test, print_fn)
    zoo_row.update(epochs=epochs, batch_size=int(training["batch_size"]), images_per_second_from=speed_source)
    keras_row, keras_recon, keras_samples = score_keras_io(
        args, x_train, x_test, latent_dim=zoo_row["latent_dim"], epochs=epochs, batch_size=zoo_row["batch_size"],
        sample_seed=seed, print_fn=print_fn)
    png = png_bits_per_dim(x_test)
    zoo_title = f"zoo: {manifest.get('variant', 'vae')}, {manifest['config'].get('likelihood')} likelihood"
    pictures = draw(args.docs, x_test, (zoo_recon, keras_recon), (zoo_samples, keras_samples), zoo_title=zoo_title,
                    seed=seed, run_name=os.path.basename(os.path.normpath(args.out)))
    return {
        "command": common.command(), "machine": common.machine(tf, keras),
        "dataset": {"name": manifest["dataset"]["name"], "train_images": len(x_train), "test_images": len(x_test),
                    "image_shape": list(x_test.shape[1:])},
        "zoo": zoo_row, "keras_io": keras_row,
        "png": {"bits_per_dim": float(png.mean()), "bits_per_dim_median": float(np.median(png)),
                "encoder": "Pillow PNG, optimize=True, 8-bit, headers included"},
        "pictures": pictures, "zoo_psnr_higher": bool(zoo_row["test_psnr_db"] > keras_row["test_psnr_db"]),
    }


def table(results):
    """The markdown table of `results`, with the machine and the command above it."""
    z, k, p = results["zoo"], results["keras_io"], results["png"]
    speed = lambda v: "n/a" if v is None else f"{v:,.0f}"
    bpd = f"{z['test_bits_per_dim']:.3f}" if z["test_bits_per_dim"] is not None else "not in the manifest"
    lines = [f"machine: {results['machine']}", f"command: {results['command']}",
             f"zoo run: {z['recipe_command']}; its images/s come from {z['images_per_second_from']}",
             f"test images: {results['dataset']['test_images']} of {results['dataset']['name']}, "
             f"training images: {results['dataset']['train_images']}", "",
             "| model | parameters | latent | epochs | train images/s | test PSNR (dB) | test bits/dim |",
             "|---|---:|---:|---:|---:|---:|---:|",
             f"| zoo VAE ({z['run']}) | {z['parameters']:,} | {z['latent_dim']} | {z['epochs']} | "
             f"{speed(z['train_images_per_second'])} | {z['test_psnr_db']:.2f} | {bpd} |",
             f"| keras-io conv VAE (BCE) | {k['parameters']:,} | {k['latent_dim']} | {k['epochs']} | "
             f"{speed(k['train_images_per_second'])} | {k['test_psnr_db']:.2f} | n/a (continuous BCE loss) |",
             f"| PNG files (lossless, Pillow optimize=True) | | | | | lossless | {p['bits_per_dim']:.3f} |", "",
             f"zoo PSNR {z['test_psnr_db']:.2f} dB ({z['test_psnr_key'] or 'computed here'}; recomputed from the saved "
             f"model: {z['test_psnr_db_recomputed']:.2f}) vs keras-io {k['test_psnr_db']:.2f} dB: "
             f"{'the zoo is higher' if results['zoo_psnr_higher'] else 'the zoo is NOT higher'}",
             f"pictures: {', '.join(results['pictures'])}"]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=None,
                        help="passed to the recipe as --epochs (default: the recipe's own); keras-io trains as many")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=os.path.join("runs", "vae-openmoji"), help="the zoo's run directory")
    parser.add_argument("--reuse", action="store_true", help="score the finished run in --out instead of training it")
    parser.add_argument("--images", type=int, default=None,
                        help="train keras-io on N training images and score both on N test images (smoke runs)")
    parser.add_argument("--docs", default="docs", help="folder of the two pictures")
    parser.add_argument("--json", default=None, help="results file (default: colour-benchmark.json beside --out)")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    results = run(args)
    path = args.json or os.path.join(os.path.dirname(os.path.abspath(args.out)), "colour-benchmark.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=2)
    print(table(results))
    print(f"results: {path}")


if __name__ == "__main__":
    main()
