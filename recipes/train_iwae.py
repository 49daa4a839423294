"""Train an importance-weighted autoencoder (k-sample bound) and write a run directory.

    python recipes/train_iwae.py --dataset mnist5k --epochs 30 --latent-dim 16 --samples 5 --out runs/iwae
"""

import sys

from zoo.cli import POSITIVE_INT, main

OPTIONS = [("--samples", {"dest": "num_samples", "type": POSITIVE_INT, "default": 5,
                          "help": "k, importance samples per image in the training bound"})]

if __name__ == "__main__":
    sys.exit(main("iwae", __doc__, extra_options=OPTIONS))
