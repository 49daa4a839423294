"""Pictures of a trained model, as PNG files: what users look at to judge it.

The figure functions take plain arrays and return a matplotlib `Figure` (drawn with the Agg canvas,
never pyplot, so nothing here needs a display or changes matplotlib's global backend);
`draw_run` asks a model for the arrays and writes every picture that applies to it.
"""

import csv
import os
import textwrap

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from zoo import metrics
from zoo.files import atomic_write
from zoo.grid import mosaic, offsets

SHAPE_NAMES = ("square", "ellipse", "heart")  # dSprites shape ids, in the order zoo.data.dsprites draws them
LOSS_NAMES = ("loss", "reconstruction", "kl")


def grid_figure(images, rows, cols, title, row_labels=None, col_labels=None, xlabel=None, ylabel=None):
    """A grid of images with optional labels for its rows and columns."""
    tile = mosaic(images, rows, cols)
    h, w = images.shape[1:3]
    cell = 0.6  # inches per image
    width = max(5.0, cols * cell + (1.6 if row_labels or ylabel else 0.4))
    title = textwrap.fill(title, width=int(width * 11))
    height = rows * cell * h / w + 0.5 + 0.2 * title.count("\n") + (0.5 if col_labels or xlabel else 0.1)
    fig = Figure(figsize=(width, height), layout="constrained")
    ax = fig.add_subplot()
    _show(ax, tile)
    ax.set_xticks([left + w / 2 - 0.5 for left in offsets(cols, w)] if col_labels else [])
    ax.set_xticklabels(col_labels or [], fontsize=8)
    ax.set_yticks([top + h / 2 - 0.5 for top in offsets(rows, h)] if row_labels else [])
    ax.set_yticklabels(row_labels or [], fontsize=8)
    ax.tick_params(length=0)
    ax.set_xlabel(xlabel or "")
    ax.set_ylabel(ylabel or "")
    ax.set_title(title, fontsize=10)
    return fig


def manifold_figure(images, z1, z2, title):
    """Decoded images on a grid of 2-D latents; `images[r * len(z1) + c]` decodes `(z1[c], z2[-1 - r])`."""
    tile = mosaic(images, len(z2), len(z1), pad=0)
    half1, half2 = (z1[1] - z1[0]) / 2, (z2[1] - z2[0]) / 2
    fig = Figure(figsize=(7, 7), layout="constrained")
    ax = fig.add_subplot()
    _show(ax, tile, extent=(z1[0] - half1, z1[-1] + half1, z2[0] - half2, z2[-1] + half2), aspect="auto")
    ax.set_xlabel("z1")
    ax.set_ylabel("z2")
    ax.set_title(title, fontsize=10)
    return fig


def latent_map_figure(means, classes, title, class_names=None, legend_title="class"):
    """Latent means of test images, coloured by class; PCA to two dimensions when there are more."""
    means = np.asarray(means, np.float64)
    if means.ndim != 2 or means.shape[1] < 2:
        raise ValueError(f"Expected latent means of shape (N, D >= 2), received {means.shape}.")
    if means.shape[1] == 2:
        points, axes = means, ("z1", "z2")
    else:
        centred = means - means.mean(0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        points, share = centred @ vt[:2].T, s[:2] ** 2 / max(np.sum(s ** 2), 1e-12)
        axes = tuple(f"principal component {i + 1} ({100 * share[i]:.0f}% of variance)" for i in range(2))
    fig = Figure(figsize=(7, 6), layout="constrained")
    ax = fig.add_subplot()
    for i, c in enumerate(np.unique(classes)):
        at = classes == c
        name = class_names[c] if class_names is not None else str(c)
        ax.scatter(points[at, 0], points[at, 1], s=8, alpha=0.7, color=f"C{i % 10}", label=name)
    ax.legend(title=legend_title, markerscale=2, fontsize=8, loc="best")
    ax.set_xlabel(axes[0])
    ax.set_ylabel(axes[1])
    ax.set_title(title, fontsize=10)
    return fig


def codebook_figure(counts, title):
    """How often each VQ code is used, codes sorted from most to least used."""
    counts = np.asarray(counts, np.float64)
    share = np.sort(counts)[::-1] / max(counts.sum(), 1.0)
    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    ax.bar(np.arange(len(share)), share, width=1.0, color="C0")
    ax.axhline(1.0 / len(share), color="C3", linestyle="--", label="uniform use")
    ax.set_xlabel(f"code, sorted by use ({int(np.sum(counts > 0))} of {len(counts)} used)")
    ax.set_ylabel("fraction of code positions")
    ax.legend()
    ax.set_title(title, fontsize=10)
    return fig


def training_curves_figure(history_path, title):
    """One panel per logged quantity of `history.csv`, training and validation against the epoch."""
    with open(history_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{history_path} has no epochs to plot.")
    names = [n for n in rows[0] if n != "epoch" and not n.startswith("val_")]
    epochs = [int(r["epoch"]) + 1 for r in rows]
    fig = Figure(figsize=(4 * len(names), 3.5), layout="constrained")
    for i, name in enumerate(names):
        ax = fig.add_subplot(1, len(names), i + 1)
        for column, label in ((name, "training"), (f"val_{name}", "validation")):
            values = [_number(r.get(column)) for r in rows]
            if not np.isnan(values).all():  # Keras writes "NA" for epochs without validation
                ax.plot(epochs, values, marker=".", label=label)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{name} (nats per image)" if name in LOSS_NAMES else name)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title, fontsize=10)
    return fig


def save(fig, path):
    """Writes `fig` as a PNG under a temporary name, then renames it into place."""
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, bbox_inches="tight", pad_inches=0.1))


def draw_run(model, folder, x, y, *, means=None, kl=None, main_factor=None, code_counts=None, history=None, name="",
             seed=0, class_names=None, restyle_rows=None):
    """Writes every picture that applies to `model` into `folder`; returns the file names.

    Grey (C = 1) and colour (C = 3) images alike.

    Args:
        model: a zoo model.
        x, y: test images `[N, H, W, C]` and labels (or dSprites factors `[N, K]`).
        means: latent codes of `x` (posterior means, or the autoencoder's z); None for discrete latents.
        kl: KL per latent dimension, shown beside the traversal rows.
        main_factor: the factor each active latent follows (`{"z7:x": 0.85}`, a dSprites run's
            metric), shown beside the traversal rows.
        code_counts: use count of each VQ code, for the codebook histogram.
        history: path of `history.csv`, for the training curves.
        name: what the titles call the model (e.g. "vae on mnist5k").
        class_names: the name of each class id (the run manifest's `dataset.class_names`), for the
            rows of a conditional model and the latent map's legend; None shows the ids.
        restyle_rows: indices into `x` of the inputs `restyle.png` redraws in every class (a
            conditional model's); None takes the first test image of each class, 6 at most.

    Raises:
        ValueError: `class_names` does not name each of the model's classes.
    """
    if class_names is not None and model.num_classes and len(class_names) != model.num_classes:
        raise ValueError(f"Expected one class name for each of the model's {model.num_classes} classes, received "
                         f"{len(class_names)}: {list(class_names)}.")
    called = (lambda c: str(c)) if class_names is None else (lambda c: str(class_names[c]))
    labels = y.astype(np.int32) if model.num_classes else None
    lab = (lambda index: None) if labels is None else (lambda index: labels[index])
    decode = lambda z, ids=None: model.decode(np.asarray(z, np.float32), ids).mean().numpy()
    figures = {}

    pick = np.linspace(0, len(x) - 1, 10).astype(int)
    outputs = model(x[pick], lab(pick)).numpy()
    pairs = np.concatenate([x[pick[:5]], outputs[:5], x[pick[5:]], outputs[5:]])
    figures["reconstructions.png"] = grid_figure(
        pairs, 4, 5, f"Reconstructions, {name}: test inputs above their reconstructions",
        row_labels=["input", "reconstruction"] * 2)

    if model.num_classes and model.has_prior:
        z = model.prior().sample(10, seed=seed).numpy()
        grid = decode(np.tile(z, (model.num_classes, 1)), np.repeat(np.arange(model.num_classes, dtype=np.int32), 10))
        figures["class_grid.png"] = grid_figure(
            grid, model.num_classes, 10, f"Class-conditional samples, {name}: one row per class, one z per column",
            row_labels=[called(c) for c in range(model.num_classes)], ylabel="class",
            xlabel="z ~ p(z), shared by the column")
        if hasattr(model, "restyle") and np.ndim(y) == 1:
            figures["restyle.png"] = restyle_figure(model, x, labels, restyle_rows, name, called)
    elif model.has_prior or hasattr(model, "num_codes"):
        figures["samples.png"] = grid_figure(model.sample(64, seed=seed).numpy(), 8, 8,
                                             f"Samples, {name}: z ~ p(z), mean of p(x|z)")
        if getattr(model, "prior_name", "frequencies") == "pixelcnn":  # beside the baseline prior's
            figures["samples_frequencies.png"] = grid_figure(
                model.sample(64, seed=seed, prior="frequencies").numpy(), 8, 8,
                f"Samples, {name}: codes drawn independently from their per-position frequencies")

    if means is not None:
        figures.update(_latent_figures(model, decode, x, y, labels, means, kl, main_factor or {}, name, called,
                                       class_names))
    if code_counts is not None:
        figures["codebook_usage.png"] = codebook_figure(
            code_counts, f"Codebook usage, {name}: perplexity {metrics.perplexity(code_counts):.1f} "
                         f"of {len(code_counts)} codes")
    if history and os.path.exists(history):
        figures["training_curves.png"] = training_curves_figure(history, f"Training curves, {name}")

    for filename, fig in figures.items():
        save(fig, os.path.join(folder, filename))
    return sorted(figures)


def restyle_figure(model, x, labels, rows, name, called):
    """A conditional model's restyles: each row one test input, then its latent E[z|x, y] decoded
    with each label in turn; `rows` are the inputs' indices (None: the first of each class)."""
    if rows is None:
        rows = [int(np.flatnonzero(labels == c)[0]) for c in np.unique(labels)[:6]]
    rows, classes = np.asarray(rows, np.int64), model.num_classes
    if not len(rows):
        raise ValueError("Expected at least one test image to restyle, received none.")
    restyled = model.restyle(np.repeat(x[rows], classes, 0), np.repeat(labels[rows], classes),
                             np.tile(np.arange(classes, dtype=np.int32), len(rows))).numpy()
    images = np.concatenate([x[rows, None], restyled.reshape(len(rows), classes, *x.shape[1:])], 1)
    return grid_figure(
        images.reshape(-1, *x.shape[1:]), len(rows), classes + 1,
        f"Restyles, {name}: each test input's latent E[z|x, y] decoded with each label",
        row_labels=[called(c) for c in labels[rows]], col_labels=["input"] + [called(c) for c in range(classes)],
        ylabel="class of the input", xlabel="decoded with the label")


def _latent_figures(model, decode, x, y, labels, means, kl, main_factor, name, called, class_names):
    """Traversals, interpolation, the latent map and (for 2-D latents) the decoded manifold;
    `called(c)` names class c in the titles of a conditional model's pictures."""
    figures = {}
    centre, spread = means.mean(0), means.std(0) + 1e-6
    steps = np.linspace(-2.5, 2.5, 9)
    dims = np.argsort(-spread)[:min(8, means.shape[1])]
    base, label = means[0], (None if labels is None else labels[:1])
    rows = []
    for d in dims:
        z = np.tile(base, (len(steps), 1))
        z[:, d] = centre[d] + steps * spread[d]
        rows.append(decode(z, None if label is None else np.repeat(label, len(steps))))
    follows = {key.split(":")[0]: f"\n{key.split(':')[1]} {share:.2f}" for key, share in main_factor.items()}
    row_labels = [f"z{d + 1}" + (f" (KL {kl[d]:.1f})" if kl is not None else "") + follows.get(f"z{d + 1}", "")
                  for d in dims]
    figures["traversals.png"] = grid_figure(
        np.concatenate(rows), len(dims), len(steps),
        f"Latent traversals, {name}: the {len(dims)} most active of {means.shape[1]} latents, one varied per "
        "row, the others at a test image's code" + ("" if label is None else f" (class {called(label[0])})"),
        row_labels=row_labels, col_labels=[f"{s:+.1f}" for s in steps],
        xlabel="latent value, in standard deviations of E[z|x] over the test set from its mean")

    a, b = _interpolation_ends(y, labels)
    t = np.linspace(0, 1, 10)
    path = decode((1 - t)[:, None] * means[a] + t[:, None] * means[b],
                  None if labels is None else np.full(len(t), labels[a], np.int32))
    figures["interpolation.png"] = grid_figure(
        np.concatenate([x[a:a + 1], path, x[b:b + 1]]), 1, 12,
        f"Interpolation, {name}: decoded (1 - t) z_A + t z_B between the codes of two test images"
        + ("" if labels is None else f" (class {called(labels[a])})"),
        col_labels=["A"] + [f"{v:.2f}" for v in t] + ["B"], xlabel="t")

    if means.shape[1] >= 2:
        factors = np.asarray(y).ndim == 2  # dSprites: colour by the shape factor
        figures["latent_map.png"] = latent_map_figure(
            means, y[:, 0] if factors else y, f"Latent means of the test set, {name}" +
            (" (the label is an input, so z need not separate classes)" if labels is not None else ""),
            class_names=SHAPE_NAMES if factors else class_names, legend_title="shape" if factors else "class")
    if means.shape[1] == 2:
        z1, z2 = (np.linspace(c - 2.5 * s, c + 2.5 * s, 15) for c, s in zip(centre, spread))
        grid = np.stack(np.meshgrid(z1, z2[::-1]), -1).reshape(-1, 2)
        given = None if labels is None else np.zeros(len(grid), np.int32)
        figures["manifold.png"] = manifold_figure(
            decode(grid, given), z1, z2,
            f"Decoded 2-D latent manifold, {name}" + ("" if given is None else f" (class {called(0)})"))
    return figures


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return np.nan


def _interpolation_ends(y, labels):
    """Two test images: of different classes, or of the same class for a conditional model."""
    if np.asarray(y).ndim != 1:
        return 0, 1
    first = y[0]
    same = np.flatnonzero(y == first)
    other = np.flatnonzero(y != first)
    if labels is not None or not len(other):
        return int(same[0]), int(same[1] if len(same) > 1 else same[0])
    return int(same[0]), int(other[0])


def _show(ax, tile, **kwargs):
    if tile.shape[-1] == 1:
        ax.imshow(tile[..., 0], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest", **kwargs)
    else:
        ax.imshow(np.clip(tile, 0, 1), interpolation="nearest", **kwargs)
    for spine in ax.spines.values():
        spine.set_visible(False)
