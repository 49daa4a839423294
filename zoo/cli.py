"""The recipes' command line, without TensorFlow: `--help` and bad flags answer at once.

`main(variant, ...)` parses the flags here and only then imports `zoo.training` (and with it
TensorFlow) to train.
"""

import argparse
import math
import os
import shlex
import sys

import zoo
from zoo import data, evaluate

STRATEGIES = ("auto", "mirrored", "multiworker")
BINARIZE = ("dynamic", "threshold", "none")
# auto: `zoo.likelihoods.choose`; the others are `zoo.likelihoods.NAMES` (a test keeps them equal)
LIKELIHOODS = ("auto", "bernoulli", "gaussian", "gaussian_pixel", "logistic", "logistic_mixture")
BACKBONES = ("auto", "conv", "resnet")  # auto: `zoo.training.choose_networks`
NORMS = ("none", "group", "weight")
PRIORS = ("normal", "mog", "frequencies", "pixelcnn")  # the last two: over a vqvae's codes


def _checked(convert, test, expected):
    """An argparse type: `convert(text)` when `test` accepts it, else the error 'expected ...'."""
    def parse(text):
        try:
            value = convert(text)
        except ValueError:
            value = None
        if value is None or not test(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, received {text!r}")
        return value

    return parse


# Every number flag takes one of these: NaN and infinities fail every test.
POSITIVE_INT = _checked(int, lambda v: v > 0, "a positive integer")
COUNT = _checked(int, lambda v: v >= 0, "an integer >= 0")
POSITIVE = _checked(float, lambda v: 0 < v < math.inf, "a positive number")
NON_NEGATIVE = _checked(float, lambda v: 0 <= v < math.inf, "a finite number >= 0")
FRACTION = _checked(float, lambda v: 0 <= v < 1, "a fraction in [0, 1)")
IMAGE_SIZE = _checked(data.parse_image_size, lambda v: True, "an image size H or HxW in pixels, such as 64 or 48x64")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Keeps the description's lines (its commands stay copyable) and shows every flag's default,
    unless its help already says it ("(default: ...)")."""

    def _get_help_string(self, action):
        text = action.help or ""
        return text if "(default" in text else super()._get_help_string(action)


def add_verbose(parser):
    """`--verbose`: show TensorFlow's logs (see `zoo.import_tensorflow`)."""
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's logs (hidden by default; TF_CPP_MIN_LOG_LEVEL also works)")


def build_parser(variant, description, defaults=None, extra_options=()):
    """The recipe's command line.

    Args:
        defaults: flag defaults that differ for this recipe, by destination (e.g. `latent_dim=10`).
        extra_options: `(flag, argparse keyword arguments)` pairs for model flags; their values
            go to the model's constructor (e.g. `("--beta", {"type": float, "default": 4.0})`).
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.add_argument("--dataset", default="mnist5k",
                        help=f"one of {', '.join(data.names())}, a .npz file / IDX folder, a folder of images "
                             "(class subfolders are labels) or a folder packed by `python -m zoo.data pack`")
    images = parser.add_argument_group("images (folders, packed folders, and any dataset resized)")
    images.add_argument("--image-size", type=IMAGE_SIZE, default=None,
                        help="H or HxW: resize every image (folders default to 64x64)")
    images.add_argument("--channels", type=POSITIVE_INT, choices=(1, 3), default=None,
                        help="1 grey or 3 RGB (RGBA is composited on white; folders default to 3)")
    images.add_argument("--fit", choices=data.FITS, default="crop",
                        help="how --image-size keeps the aspect ratio: centre crop, or pad with white")
    images.add_argument("--cache", default=None, metavar="memory|PATH",
                        help="keep decoded images after the first epoch: in memory, or in files at PATH")
    images.add_argument("--skip-bad-files", action="store_true",
                        help="leave out unreadable image files (each is named in the output) instead of stopping")
    parser.add_argument("--epochs", type=POSITIVE_INT, default=30, help="passes over the training images")
    parser.add_argument("--batch-size", type=POSITIVE_INT, default=32,
                        help="global batch: split evenly across the replicas of --strategy")
    parser.add_argument("--latent-dim", type=POSITIVE_INT, default=16, help="size of z")
    parser.add_argument("--learning-rate", type=POSITIVE, default=1e-3,
                        help="peak of the cosine schedule; not scaled with the replicas (the global batch is fixed)")
    parser.add_argument("--seed", type=COUNT, default=0,
                        help="seed of the weights, the validation split, the shuffling and the evaluation")
    parser.add_argument("--out", default=os.path.join("runs", variant),
                        help="run directory to write; rerunning the same command resumes an unfinished run there")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace a finished run at --out; it stays whole until the new run finishes")
    parser.add_argument("--validation-split", type=FRACTION, default=0.1,
                        help="fraction of the training images held out; the best weights on them are kept")
    parser.add_argument("--patience", type=COUNT, default=10, help="early-stopping patience in epochs")
    parser.add_argument("--likelihood", choices=LIKELIHOODS, default="auto",
                        help="p(x|z); auto: bernoulli when grey training pixels are near-binary (at least 80%% "
                             "within 0.1 of 0 or 1, as MNIST and dSprites), logistic_mixture (8-bit levels, "
                             "bits/dim) for colour images, else gaussian")
    parser.add_argument("--binarize", choices=BINARIZE, default="dynamic",
                        help="Bernoulli models: sample binary pixels from grey levels each epoch (dynamic), "
                             "threshold them at 0.5, or train on grey levels (none)")
    parser.add_argument("--nll-samples", type=COUNT, default=evaluate.K,
                        help="importance samples per test image for the test NLL of the evaluation after "
                             "training (0 skips it); the README's figures use 500: "
                             "`python -m zoo.evaluate RUN_DIR --k 500`")
    parser.add_argument("--prior", choices=PRIORS, default="normal",
                        help="prior p(z): normal or mog for Gaussian latents; frequencies or pixelcnn for vqvae codes")
    parser.add_argument("--backbone", choices=BACKBONES, default="auto",
                        help="encoder and decoder: strided convs, or pre-activation residual blocks; auto: resnet "
                             "(the better on OpenMoji and on mnist5k-bin)")
    parser.add_argument("--width", type=POSITIVE_INT, default=None,
                        help="filters of the first level, doubled per level up to 4x (default: 64 for conv, "
                             "32 for resnet)")
    parser.add_argument("--depth", type=POSITIVE_INT, default=1, help="residual blocks per resolution (resnet)")
    parser.add_argument("--norm", choices=NORMS, default="none", help="normalisation in the residual blocks (resnet)")
    parser.add_argument("--dense-layers", type=COUNT, default=0,
                        help="hidden dense layers between the conv trunk and z, in encoder and decoder "
                             "(a broadcast decoder has none)")
    parser.add_argument("--hidden", type=POSITIVE_INT, default=256,
                        help="units of each hidden dense layer (--dense-layers, and the MLP backbone of small images)")
    parser.add_argument("--broadcast-decoder", action=argparse.BooleanOptionalAction, default=False,
                        help="spatial broadcast decoder (z tiled over the image with pixel coordinates, then "
                             "stride-1 convs) instead of transposed convs; keeps position on latents of its own")
    scale = parser.add_argument_group("training at scale and under faults")
    scale.add_argument("--strategy", choices=STRATEGIES, default="auto",
                       help="auto: mirror over several local GPUs (or --cpu-devices), else one device; "
                            "mirrored: tf.distribute.MirroredStrategy; multiworker: "
                            "MultiWorkerMirroredStrategy over the cluster in TF_CONFIG (the chief writes --out)")
    scale.add_argument("--cpu-devices", type=POSITIVE_INT, default=None,
                       help="split the CPU into N logical devices (mirrored replicas without GPUs) "
                            "(default: one CPU device)")
    scale.add_argument("--mixed-precision", action="store_true",
                       help="mixed_float16 compute with dynamic loss scaling (for GPUs); the saved model is float32")
    scale.add_argument("--clip-norm", type=POSITIVE, default=None,
                       help="clip gradients to this global norm (default: no clipping)")
    scale.add_argument("--checkpoint-every", type=COUNT, default=0,
                       help="also checkpoint every N training steps (0: at the end of each epoch only)")
    add_verbose(parser)
    for flag, options in extra_options:
        parser.add_argument(flag, **options)
    parser.set_defaults(**(defaults or {}))
    return parser


def main(variant, description, argv=None, defaults=None, extra_options=()):
    """Runs a recipe: parse flags, train, write the run. Returns the process exit code (see
    `zoo.training.run`)."""
    parser = build_parser(variant, description, defaults, extra_options)
    args = vars(parser.parse_args(argv))
    if os.path.exists(args["out"]) and not os.path.isdir(args["out"]):
        parser.error(f"--out {args['out']} is a file; expected a run directory (new or existing).")
    command = " ".join(["python", shlex.quote(sys.argv[0])] + [shlex.quote(a) for a in
                                                                (sys.argv[1:] if argv is None else argv)])
    zoo.import_tensorflow(args.pop("verbose"))
    from zoo import training

    return training.run(variant, args, command)
