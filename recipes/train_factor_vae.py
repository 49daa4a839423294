"""Train a FactorVAE (a discriminator on z estimates the total correlation) and write a run directory.

Defaults, like `train_beta_vae.py`, to the procedural dSprites data and the beta-VAE recipe's
networks (two dense layers between the conv trunk and z, a spatial broadcast decoder):

    python recipes/train_factor_vae.py --gamma 35 --out runs/factor_vae

The loss is the ELBO plus `--gamma` times the total correlation that the discriminator (an MLP on
z, `--discriminator-layers` of `--discriminator-units`) estimates against dimension-permuted z.
It trains in the same step with its own Adam (`--discriminator-learning-rate`), and its weights
and optimizer state are checkpointed and saved with the model, so a rerun resumes it too.
"""

import sys

from zoo.cli import NON_NEGATIVE, POSITIVE, POSITIVE_INT, main

DEFAULTS = {"dataset": "dsprites", "latent_dim": 10, "epochs": 10, "backbone": "conv", "width": 16,
            "dense_layers": 2, "broadcast_decoder": True}
OPTIONS = [("--gamma", {"type": NON_NEGATIVE, "default": 35.0, "help": "weight of the total correlation estimate"}),
           ("--discriminator-units", {"type": POSITIVE_INT, "default": 1000,
                                      "help": "units of each hidden layer of the discriminator"}),
           ("--discriminator-layers", {"type": POSITIVE_INT, "default": 6,
                                       "help": "hidden layers of the discriminator"}),
           ("--discriminator-learning-rate", {"type": POSITIVE, "default": 1e-4,
                                              "help": "the discriminator's Adam learning rate (constant)"})]

if __name__ == "__main__":
    sys.exit(main("factor_vae", __doc__, defaults=DEFAULTS, extra_options=OPTIONS))
