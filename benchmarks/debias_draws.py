"""Which training persons a `dbvae` run draws: the share of the person draws by skin tone, against
the tones' share of the training persons, from the run's final encoder (the probabilities the
last epoch would have started from), and how many images the draws effectively use.

    python benchmarks/debias_draws.py runs/db/debias-0

For a run on openmoji-persons-biased; prints a markdown table.
"""

import argparse
import sys

import numpy as np

import zoo
from zoo import data
from zoo.data import openmoji


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="a finished dbvae run on openmoji-persons-biased")
    args = parser.parse_args()
    model = zoo.load_model(args.run)
    size = model.image_shape[0]
    x, y = data.open_split("openmoji-persons-biased", "train", image_size=size).arrays()
    tones, person = openmoji.persons_tones("train"), y == 1
    p = model.sampling_probabilities(x, y)
    p = p[person] / p[person].sum()
    print(f"{args.run}: the draws among the {person.sum()} training persons use {1 / np.sum(p ** 2):.0f} of them "
          f"effectively (1 / sum p^2)\n")
    print("| tone | training persons | share of the persons | share of the person draws |")
    print("|---|---:|---:|---:|")
    for tone, name in enumerate(openmoji.CLASSES):
        mine = tones[person] == tone
        print(f"| {name} | {mine.sum()} | {mine.mean():.3f} | {p[mine].sum():.3f} |")


if __name__ == "__main__":
    sys.exit(main())
