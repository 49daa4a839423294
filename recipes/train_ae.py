"""Train a deterministic autoencoder (the baseline whose latent space cannot be sampled).

    python recipes/train_ae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --out runs/ae
"""

import sys

from zoo.cli import main

if __name__ == "__main__":
    sys.exit(main("ae", __doc__))
