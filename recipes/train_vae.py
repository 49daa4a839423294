"""Train a VAE (Gaussian q(z|x), N(0, I) prior, ELBO) and write a run directory.

    python recipes/train_vae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --out runs/vae
"""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main("vae", __doc__))
