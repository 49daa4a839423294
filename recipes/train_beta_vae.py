"""Train a beta-VAE (weighted KL for disentangled latents) and write a run directory.

Defaults to the procedural dSprites data, whose ground-truth factors make disentanglement
measurable:

    python recipes/train_beta_vae.py --dataset dsprites --latent-dim 10 --beta 4 --out runs/beta_vae

Its networks default to those that disentangle dSprites: two dense layers between the encoder's
conv trunk and z (`--dense-layers 2`, as in the beta-VAE papers), without which position and size
share latents, and a spatial broadcast decoder (`--broadcast-decoder`, Watters et al. 2019), without
which x and y spread over several latents. The encoder is the conv backbone (`--backbone conv`),
the one these results were measured with.

`--capacity C` switches to the capacity objective gamma * |KL - C(t)|, C rising to C nats.
"""

import sys

from zoo.cli import COUNT, NON_NEGATIVE, POSITIVE, POSITIVE_INT, main

DEFAULTS = {"dataset": "dsprites", "latent_dim": 10, "epochs": 10, "backbone": "conv", "width": 16,
            "dense_layers": 2, "broadcast_decoder": True}
OPTIONS = [("--beta", {"type": NON_NEGATIVE, "default": 4.0, "help": "weight of the KL term"}),
           ("--warmup-steps", {"type": COUNT, "default": 0, "help": "steps of linear KL warm-up from 0 to beta"}),
           ("--capacity", {"type": NON_NEGATIVE, "default": None,
                           "help": "C_max in nats: use the capacity objective (default: off, the beta objective)"}),
           ("--capacity-steps", {"type": POSITIVE_INT, "default": 10_000,
                                 "help": "steps for C to rise from 0 to C_max"}),
           ("--gamma", {"type": POSITIVE, "default": 100.0, "help": "weight of |KL - C| (capacity objective)"})]

if __name__ == "__main__":
    sys.exit(main("beta_vae", __doc__, defaults=DEFAULTS, extra_options=OPTIONS))
