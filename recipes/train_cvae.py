"""Train a conditional VAE (labels join the encoder input and z) and write a run directory.

The project's main command:

    python recipes/train_cvae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --out runs/cvae
"""

import sys

from zoo.training import main

if __name__ == "__main__":
    sys.exit(main("cvae", __doc__))
