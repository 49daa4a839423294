"""Train a VQ-VAE (a 7x7 grid of discrete codes for 28x28 images) and write a run directory.

    python recipes/train_vqvae.py --dataset mnist5k --epochs 30 --seed 0 --out runs/vqvae

`--latent-dim` is the size of each codebook vector.
"""

import sys

from zoo.cli import NON_NEGATIVE, POSITIVE_INT, main

OPTIONS = [("--num-codes", {"type": POSITIVE_INT, "default": 64, "help": "codebook size K"}),
           ("--commitment", {"type": NON_NEGATIVE, "default": 0.25, "help": "weight beta of the commitment loss"}),
           ("--no-ema", {"dest": "ema", "action": "store_false",
                         "help": "learn the codebook by gradient instead of EMA updates (default: EMA updates)"})]

if __name__ == "__main__":
    sys.exit(main("vqvae", __doc__, extra_options=OPTIONS))
