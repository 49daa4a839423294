"""Train a VQ-VAE (a 7x7 grid of discrete codes for 28x28 images) and write a run directory.

    python recipes/train_vqvae.py --dataset mnist5k --epochs 30 --seed 0 --out runs/vqvae
    python recipes/train_vqvae.py --dataset mnist5k --prior pixelcnn --seed 0 --out runs/vqvae-pixelcnn

`--latent-dim` is the size of each codebook vector. `--prior pixelcnn` adds a second stage: a gated
PixelCNN trained on the codes of the trained encoder for `--prior-epochs` epochs (checkpointed in
OUT/checkpoints/prior, resumed like the first stage), which `model.sample` then draws codes from;
`--prior frequencies` draws each code independently from its position's frequencies.
"""

import sys

from zoo.cli import COUNT, FRACTION, NON_NEGATIVE, POSITIVE_INT, main

OPTIONS = [("--num-codes", {"type": POSITIVE_INT, "default": 64, "help": "codebook size K"}),
           ("--commitment", {"type": NON_NEGATIVE, "default": 0.25, "help": "weight beta of the commitment loss"}),
           ("--no-ema", {"dest": "ema", "action": "store_false",
                         "help": "learn the codebook by gradient instead of EMA updates (default: EMA updates)"}),
           ("--prior-epochs", {"type": POSITIVE_INT, "default": 40,
                               "help": "epochs of the PixelCNN prior's training stage (--prior pixelcnn)"}),
           ("--prior-filters", {"type": POSITIVE_INT, "default": 64, "help": "channels of the PixelCNN's stacks"}),
           ("--prior-layers", {"type": POSITIVE_INT, "default": 6, "help": "gated layers of the PixelCNN"}),
           ("--prior-dropout", {"type": FRACTION, "default": 0.25, "help": "dropout rate in the PixelCNN"}),
           ("--prior-shifts", {"type": COUNT, "default": 4,
                               "help": "translated copies of the training images (up to 2 pixels) whose codes the "
                                       "PixelCNN also learns from"})]

if __name__ == "__main__":
    sys.exit(main("vqvae", __doc__, defaults={"prior": "frequencies"}, extra_options=OPTIONS))
