"""Train a conditional VAE (labels join the encoder input and z) and write a run directory.

The project's main command:

    python recipes/train_cvae.py --dataset mnist5k --epochs 30 --latent-dim 16 --seed 0 --out runs/cvae

Defaults to width 32 (the pretrained `cvae-mnist5k` is this run, and its decoder stays small for
apps) and a KL weight of 2: the label already says which digit to draw, and the heavier KL keeps
every class's latents near N(0, I), so samples z ~ p(z) come out as the class asked for.
"""

import sys

from zoo.cli import NON_NEGATIVE, main

DEFAULTS = {"width": 32}
OPTIONS = [("--beta", {"type": NON_NEGATIVE, "default": 2.0, "help": "weight of the KL term (1: the plain ELBO)"})]

if __name__ == "__main__":
    sys.exit(main("cvae", __doc__, defaults=DEFAULTS, extra_options=OPTIONS))
