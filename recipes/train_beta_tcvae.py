"""Train a beta-TCVAE (the total correlation of the aggregate posterior, weighted) and write a run directory.

Defaults, like `train_beta_vae.py`, to the procedural dSprites data and the beta-VAE recipe's
networks (two dense layers between the conv trunk and z, a spatial broadcast decoder):

    python recipes/train_beta_tcvae.py --beta 6 --dataset-size 18000 --out runs/beta_tcvae

The KL term is split into index-code mutual information, total correlation and dimension-wise KL,
estimated on each minibatch (`zoo.decomposition`); `--beta` weighs the total correlation, and
`--alpha` and `--gamma` the other two (1: as in the ELBO). `--dataset-size` is the N of the
estimators, by default the run's training images: dSprites' default training split holds 18,000
after the validation split. With minibatch weighted sampling (`--estimator mws`, the paper's) it only
shifts the reported parts; stratified sampling (`--estimator mss`) weighs with it.
"""

import sys

from zoo.cli import NON_NEGATIVE, POSITIVE_INT, main

DEFAULTS = {"dataset": "dsprites", "latent_dim": 10, "epochs": 10, "backbone": "conv", "width": 16,
            "dense_layers": 2, "broadcast_decoder": True}
OPTIONS = [("--beta", {"type": NON_NEGATIVE, "default": 6.0, "help": "weight of the total correlation"}),
           ("--alpha", {"type": NON_NEGATIVE, "default": 1.0, "help": "weight of the index-code mutual information"}),
           ("--gamma", {"type": NON_NEGATIVE, "default": 1.0, "help": "weight of the dimension-wise KL"}),
           ("--estimator", {"choices": ("mws", "mss"), "default": "mws",
                            "help": "minibatch weighted sampling (mws) or minibatch stratified sampling (mss)"}),
           ("--dataset-size", {"type": POSITIVE_INT, "default": None,
                               "help": "N, the images each minibatch stands for (default: the run's training images)"})]

if __name__ == "__main__":
    sys.exit(main("beta_tcvae", __doc__, defaults=DEFAULTS, extra_options=OPTIONS))
