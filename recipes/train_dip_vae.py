"""Train a DIP-VAE-II (the aggregate posterior's covariance pulled to the identity) and write a run directory.

Defaults, like `train_beta_vae.py`, to the procedural dSprites data and the beta-VAE recipe's
networks (two dense layers between the conv trunk and z, a spatial broadcast decoder):

    python recipes/train_dip_vae.py --lambda-od 10 --lambda-d 10 --out runs/dip_vae

The loss is the ELBO plus `--lambda-od` times the squared off-diagonal entries and `--lambda-d`
times the squared distances from 1 of the diagonal of Cov_q(z) = E[Cov_q(z|x)] + Cov[E_q(z|x)],
estimated on each minibatch.
"""

import sys

from zoo.cli import NON_NEGATIVE, main

DEFAULTS = {"dataset": "dsprites", "latent_dim": 10, "epochs": 10, "backbone": "conv", "width": 16,
            "dense_layers": 2, "broadcast_decoder": True}
OPTIONS = [("--lambda-od", {"type": NON_NEGATIVE, "default": 10.0,
                            "help": "weight of the squared off-diagonal covariances of q(z)"}),
           ("--lambda-d", {"type": NON_NEGATIVE, "default": 10.0,
                           "help": "weight of the squared distances of q(z)'s variances from 1"})]

if __name__ == "__main__":
    sys.exit(main("dip_vae", __doc__, defaults=DEFAULTS, extra_options=OPTIONS))
