"""The maths of the evaluation metrics, on plain numpy arrays (no models), so each can be tested alone.

`zoo.evaluate` feeds these with a model's latent codes; the tests feed them with arrays whose
answer is known (the dSprites factors themselves, noise, separable scores, stand-in code maps).
"""

import warnings

import numpy as np
import tensorflow_probability as tfp

tfd = tfp.distributions
ACTIVE_THRESHOLD = 0.01  # Burda et al.'s variance of E_q[z_d | x] above which a unit is active


def kl_per_dimension(loc, scale):
    """Mean KL(q(z_d|x) || N(0, 1)) per latent dimension over the images, in nats.

    For a diagonal Gaussian posterior and a N(0, I) prior the KL splits over dimensions:

        KL_d(x) = 0.5 * (mu_d^2 + sigma_d^2 - 1) - log sigma_d

    Dimensions whose KL stays near 0 carry no information about x ("posterior collapse").

    Args:
        loc, scale: posterior means and standard deviations `[N, D]`.

    Returns:
        float64 array `[D]`.
    """
    loc, scale = _matrix("loc", loc), _matrix("scale", scale)
    if loc.shape != scale.shape:
        raise ValueError(f"Expected `loc` and `scale` of the same shape, received {loc.shape} and {scale.shape}.")
    if np.any(scale <= 0):
        raise ValueError(f"Expected positive posterior scales, received a minimum of {scale.min():g}.")
    standard = tfd.Normal(np.float64(0.0), np.float64(1.0))
    return np.mean(tfd.kl_divergence(tfd.Normal(loc, scale), standard).numpy(), axis=0)


def active_units(means, threshold=ACTIVE_THRESHOLD):
    """Number of active latent units (Burda et al., 2016) and the activity of each unit.

        A_u = #{d : Cov_x(E_q[z_d | x]) > threshold},   threshold = 0.01

    A unit whose posterior mean does not move with x is unused by the decoder.

    Returns:
        `(count, activity)`: an int and the float64 variances `[D]`.
    """
    activity = np.var(_matrix("means", means), axis=0)
    return int(np.sum(activity > threshold)), activity


def mutual_information(codes, factors, num_bins=20):
    """I(z_j; v_k) in nats for every factor k (rows) and latent j (columns), as a `[K, D]` array.

    Each latent is discretised into `num_bins` equal-width bins (as in disentanglement_lib), then

        I(z_j; v_k) = sum_{a,b} p(a, b) log [p(a, b) / (p(a) p(b))]

    over the empirical joint histogram.
    """
    from sklearn.metrics import mutual_info_score

    codes, factors = _paired(codes, factors)
    binned = [_discretise(column, num_bins) for column in codes.T]
    return np.array([[mutual_info_score(v, b) for b in binned] for v in factors.T])


def mutual_info_gap(codes, factors, num_bins=20):
    """The Mutual Information Gap (Chen et al., 2018), in [0, 1]; 1 means each factor lives in one latent.

        MIG = 1/K sum_k [I(z_(1); v_k) - I(z_(2); v_k)] / H(v_k)

    where z_(1) and z_(2) are the latents sharing the most and second-most information with the
    factor v_k. Equal-width binning of a latent with more values than `num_bins` loses some
    information, so MIG stays slightly below 1 even for a perfect code.

    Args:
        codes: latent codes `[N, D]` (posterior means).
        factors: integer ground-truth factors `[N, K]`.
        num_bins: bins per latent.

    Returns:
        `(mig, per_factor)`: a float and the normalised gap of each factor `[K]`.
    """
    info = mutual_information(codes, factors, num_bins)
    entropy = np.array([_entropy(v) for v in _paired(codes, factors)[1].T])
    top = -np.sort(-np.pad(info, ((0, 0), (0, 1))), axis=1)  # the padding makes a second-best of 0 when D = 1
    per_factor = np.where(entropy > 0, (top[:, 0] - top[:, 1]) / np.maximum(entropy, 1e-12), 0.0)
    return float(np.mean(per_factor)), per_factor


def variance_explained(codes, factors):
    """The share of each latent's variance that each factor explains (the correlation ratio), `[K, D]`.

        eta^2(z_j; v_k) = Var_v(E[z_j | v_k = v]) / Var(z_j)

    It is 1 when z_j is a function of v_k alone and 0 when z_j's mean is the same for every value of
    v_k, so it names the factor that a latent's traversal changes, which MIG's mutual information
    does not. It misses a code whose mean does not move with the factor: size coded by |z_j|, with
    the sign following another factor, has eta^2 0 for size while its MI is high. Constant latents
    get 0.
    """
    codes, factors = _paired(codes, factors)
    centred = codes - codes.mean(axis=0)
    total = np.mean(centred**2, axis=0)
    between = np.empty((factors.shape[1], codes.shape[1]))
    for k, factor in enumerate(factors.T):
        _, group, counts = np.unique(factor, return_inverse=True, return_counts=True)
        sums = np.zeros((len(counts), codes.shape[1]))
        np.add.at(sums, group, centred)
        between[k] = np.sum(sums**2 / counts[:, None], axis=0) / len(codes)
    return np.divide(between, total, out=np.zeros_like(between), where=total > 1e-12)


def beta_vae_score(codes, factors, batch_size=64, num_train=5000, num_eval=2500, seed=0):
    """The beta-VAE disentanglement score (Higgins et al., 2017): accuracy of a linear classifier.

    Each example fixes one factor k at random and draws `batch_size` pairs of images that share the
    value of v_k (all other factors random); its feature is the mean absolute difference of their
    codes, and its label is k:

        f = 1/L sum_l |z(x_l) - z(x'_l)|,   v_k(x_l) = v_k(x'_l)

    In a disentangled code the latent of factor k does not change within a pair, so a linear
    classifier reads k off f. The pairs are drawn from the given pool of images, which is the same
    distribution as rendering them with the factor fixed. Chance level is 1/K.

    Returns:
        Held-out accuracy of the classifier, a float in [0, 1].
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    codes, factors = _paired(codes, factors)
    rng = np.random.default_rng(seed)

    def examples(n):
        k = rng.integers(0, factors.shape[1], size=n)
        first = rng.integers(0, len(codes), size=(n, batch_size))
        second = np.empty_like(first)
        for factor in range(factors.shape[1]):
            rows = k == factor
            second[rows] = _same_value_partner(factors[:, factor], first[rows], rng)
        return np.abs(codes[first] - codes[second]).mean(axis=1), k

    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    classifier.fit(*examples(num_train))
    f, k = examples(num_eval)
    return float(classifier.score(f, k))


def auroc(inlier_scores, outlier_scores):
    """Area under the ROC curve of a score that should be higher for outliers.

        AUROC = P(s(x_out) > s(x_in)) + 0.5 P(s(x_out) = s(x_in))

    1 separates perfectly, 0.5 is chance. With s(x) = -log p(x), it asks whether the model gives
    out-of-distribution images lower likelihood than test images.
    """
    from sklearn.metrics import roc_auc_score

    inlier, outlier = (np.asarray(s, np.float64).ravel() for s in (inlier_scores, outlier_scores))
    if not len(inlier) or not len(outlier):
        raise ValueError(f"Expected scores for both groups, received {len(inlier)} inliers and {len(outlier)} outliers.")
    if not (np.isfinite(inlier).all() and np.isfinite(outlier).all()):
        raise ValueError("Scores contain NaN or Inf values.")
    labels = np.r_[np.zeros(len(inlier)), np.ones(len(outlier))]
    return float(roc_auc_score(labels, np.r_[inlier, outlier]))


def psnr(images, references, peak=1.0):
    """Peak signal-to-noise ratio in dB of each image against its reference, both in [0, peak]:

        PSNR = 10 log10(peak^2 / mean((x - x_ref)^2))   per image, an array [N]

    The mean over images of this array is the usual reconstruction PSNR. An exact copy is capped at
    100 dB (an MSE of 1e-10), so that means stay finite.
    """
    images, references = (np.asarray(a, np.float64) for a in (images, references))
    if images.shape != references.shape or images.ndim < 2:
        raise ValueError(f"Expected two batches of images of one shape, received {images.shape} and {references.shape}.")
    mse = np.mean(np.square(images - references), axis=tuple(range(1, images.ndim)))
    return 10 * np.log10(peak**2 / np.maximum(mse, 1e-10 * peak**2))


def bits_per_dim(nll_nats, image_shape):
    """A negative log-likelihood in nats per image as bits per dimension (pixel and channel):
    NLL / (H W C ln 2), the unit of likelihood results on 8-bit images (PixelCNN++, NVAE)."""
    return float(nll_nats) / (float(np.prod(image_shape)) * np.log(2.0))


def frechet_distance(features, references):
    """The Fréchet distance between Gaussians fitted to two sets of feature vectors `[N, F]`:

        d^2 = ||mu_1 - mu_2||^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2))

    the formula of the FID (Heusel et al., 2017). On Inception features it is the FID; the zoo
    feeds it with its own classifier's features (`zoo.report.sample_quality`), so its values are
    comparable between models on one dataset only, not with published FIDs.
    """
    from scipy import linalg

    a, b = _matrix("features", features).astype(np.float64), _matrix("references", references).astype(np.float64)
    if a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"Expected two sets of at least 2 feature vectors of one size, received {a.shape} and "
                         f"{b.shape}.")
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # ReLU features that never fire make the product singular: fine here
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = linalg.sqrtm(cov_a @ cov_b)
        if not np.isfinite(root).all():  # the usual remedy (as in pytorch-fid): a small ridge
            ridge = 1e-6 * np.eye(len(cov_a))
            root = linalg.sqrtm((cov_a + ridge) @ (cov_b + ridge))
    return float(np.sum((a.mean(0) - b.mean(0)) ** 2) + np.trace(cov_a + cov_b - 2 * root.real))


def class_statistics(probabilities):
    """How a classifier reads a set of images, from its class probabilities `[N, C]`:

        confidence = mean_i max_c p(c | x_i),   class_entropy = H(histogram of argmax_c p(c | x_i))

    in nats; the entropy is log C when every class is predicted equally often (diverse samples)
    and 0 when one class takes all.
    """
    p = _matrix("probabilities", probabilities)
    return {"confidence": float(np.mean(np.max(p, 1))), "class_entropy": _entropy(np.argmax(p, 1))}


def codebook_stats(codes, num_codes):
    """Use of a VQ-VAE codebook: perplexity and the fraction of codes in use.

        p_c = count(c) / sum counts,   perplexity = exp(-sum_c p_c log p_c)

    Perplexity is the effective number of codes: `num_codes` when all are used equally, 1 when one
    code takes every position.

    Args:
        codes: integer code indices of any shape (e.g. `[B, h, w]`).
        num_codes: codebook size K.

    Returns:
        dict with `perplexity`, `codebook_usage` (fraction of codes used at least once),
        `codes_used` and `counts` (int array `[K]`).
    """
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise ValueError(f"Expected integer code indices, received dtype {codes.dtype}.")
    if codes.size == 0:
        raise ValueError("Expected at least one code index, received an empty array.")
    if codes.min() < 0 or codes.max() >= num_codes:
        raise ValueError(f"Code indices must lie in [0, {num_codes - 1}], received [{codes.min()}, {codes.max()}].")
    counts = np.bincount(codes.ravel(), minlength=num_codes)
    return {"perplexity": perplexity(counts), "codebook_usage": float(np.mean(counts > 0)),
            "codes_used": int(np.sum(counts > 0)), "counts": counts}


def perplexity(counts):
    """exp(H(p)) of the frequencies p = counts / sum(counts): the effective number of codes in use."""
    counts = np.asarray(counts, np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


# --- helpers ----------------------------------------------------------------------------------


def _matrix(name, values):
    values = np.asarray(values, np.float64)
    if values.ndim != 2 or not len(values):
        raise ValueError(f"Expected `{name}` as a non-empty [N, D] array, received shape {values.shape}.")
    return values


def _paired(codes, factors):
    codes, factors = _matrix("codes", codes), np.asarray(factors)
    if factors.ndim != 2 or len(factors) != len(codes):
        raise ValueError(f"Expected `factors` of shape ({len(codes)}, K) to match the codes, "
                         f"received {factors.shape}.")
    if not np.issubdtype(factors.dtype, np.integer):
        raise ValueError(f"Expected integer factor values, received dtype {factors.dtype}.")
    return codes, factors


def _discretise(column, num_bins):
    edges = np.histogram_bin_edges(column, bins=num_bins)
    return np.digitize(column, edges[1:-1])


def _entropy(values):
    p = np.unique(values, return_counts=True)[1] / len(values)
    return float(-np.sum(p * np.log(p)))


def _same_value_partner(factor, first, rng):
    """For each index in `first`, a random index of the pool with the same value of `factor`."""
    order = np.argsort(factor, kind="stable")
    values, starts, counts = np.unique(factor[order], return_index=True, return_counts=True)
    group = np.searchsorted(values, factor[first])
    return order[starts[group] + (rng.random(first.shape) * counts[group]).astype(int)]
