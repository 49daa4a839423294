"""Train a debiasing VAE (Amini et al. 2019: a classifier and a VAE sharing an encoder, on images
resampled by their rarity in the latent space) and write a run directory.

Defaults to `openmoji-persons-biased`, "person" vs "other" emoji, whose training split keeps only
5% of the persons with the two darkest skin tones, at 32x32:

    python recipes/train_dbvae.py --seed 0 --out runs/dbvae
    python recipes/train_dbvae.py --seed 0 --no-debias --out runs/dbvae-plain   # the baseline

Each epoch the person images are drawn with the weight of their rarest latent, max_d of
1 / (Q_d(mu_d) + alpha) normalised per latent, Q_d the histogram (`--bins`) of latent d over the
training persons, recomputed from the encoder at the start of the epoch; the other images are
drawn uniformly. `--no-debias` shuffles as usual. Any dataset with two classes works: class 1
(the second class subfolder, in sorted order) is the one the VAE models and the resampling evens
out. The training images are held in memory. On OpenMoji the draws did not favour the dark tones
(see the README's "Debiasing VAE"): measure them with `python benchmarks/debias_draws.py RUN`.
"""

import argparse
import sys

from zoo.cli import NON_NEGATIVE, POSITIVE, POSITIVE_INT, main

DEFAULTS = {"dataset": "openmoji-persons-biased", "image_size": 32}
OPTIONS = [("--debias", {"action": argparse.BooleanOptionalAction, "default": True,
                         "help": "resample the training images by their latent density (--no-debias: shuffle them "
                                 "as usual, the baseline)"}),
           ("--alpha", {"type": POSITIVE, "default": 0.01,
                        "help": "smoothing of the weights: larger draws more uniformly"}),
           ("--bins", {"type": POSITIVE_INT, "default": 10, "help": "histogram bins per latent dimension"}),
           ("--classifier-weight", {"type": NON_NEGATIVE, "default": None,
                                    "help": "weight of the classification loss (default: the number of pixel "
                                            "values, so that it weighs like the reconstruction)"})]

if __name__ == "__main__":
    sys.exit(main("dbvae", __doc__, defaults=DEFAULTS, extra_options=OPTIONS))
