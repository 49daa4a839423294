"""Write the outlier-detection sets of `zoo.evaluate` as `.npz` files, for `apps/score.py`.

The inliers are a seeded subset of a dataset's test split; the outliers are the sets
`zoo.report.ood_sets` builds for the same image shape (dSprites, the other digit datasets, uniform
noise), each as many images. Every file holds `x` as uint8 [N, H, W, C].

    python benchmarks/outlier_sets.py mnist5k /tmp/ood --n 500
    python apps/score.py runs/cvae /tmp/ood/mnist5k.npz /tmp/ood/dsprites.npz /tmp/ood/noise.npz
"""

import argparse
import os
import sys

import numpy as np

import zoo


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="the inliers' dataset (its test split), e.g. mnist5k")
    parser.add_argument("out", help="folder for <dataset>.npz and one .npz per outlier set")
    parser.add_argument("--n", type=int, default=500, help="images per set")
    parser.add_argument("--seed", type=int, default=0, help="seed of the subsets and the noise")
    args = parser.parse_args(argv)
    zoo.import_tensorflow()
    from zoo import data, report

    x = data.load(args.dataset, "test")[0]
    sets = {args.dataset: x[report.subset_indices(len(x), args.n, args.seed)],
            **report.ood_sets(x.shape[1:], args.dataset, min(args.n, len(x)), args.seed)}
    os.makedirs(args.out, exist_ok=True)
    for name, images in sets.items():
        path = os.path.join(args.out, f"{name}.npz")
        np.savez_compressed(path, x=np.round(images * 255).astype(np.uint8))
        print(f"wrote {path}: {len(images)} images of {'x'.join(map(str, images.shape[1:]))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
