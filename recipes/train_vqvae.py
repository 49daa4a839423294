"""Train a VQ-VAE (a 7x7 grid of discrete codes for 28x28 images) and write a run directory.

    python recipes/train_vqvae.py --dataset mnist5k --epochs 30 --seed 0 --out runs/vqvae

`--latent-dim` is the size of each codebook vector.
"""

import sys

from zoo.cli import main

OPTIONS = [("--num-codes", {"type": int, "default": 64, "help": "codebook size K"}),
           ("--commitment", {"type": float, "default": 0.25, "help": "weight beta of the commitment loss"}),
           ("--no-ema", {"dest": "ema", "action": "store_false",
                         "help": "learn the codebook by gradient instead of EMA updates (ema: %(default)s)"})]

if __name__ == "__main__":
    sys.exit(main("vqvae", __doc__, extra_options=OPTIONS))
