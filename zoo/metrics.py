"""The maths of the evaluation metrics, on plain numpy arrays (no models), so each can be tested alone.

`zoo.evaluate` feeds these with a model's latent codes; the tests feed them with arrays whose
answer is known (the dSprites factors themselves, noise, separable scores, stand-in code maps).
"""

import warnings

import numpy as np
import tensorflow_probability as tfp

tfd = tfp.distributions
ACTIVE_THRESHOLD = 0.01  # Burda et al.'s variance of E_q[z_d | x] above which a unit is active
COLLAPSED_STD = 0.05  # disentanglement_lib's std of a latent's mean below which the FactorVAE score drops it
DCI_TREES, DCI_LEAF = 50, 10  # the trees of `dci`: see its docstring for the choice
LUMA = np.array([0.299, 0.587, 0.114])  # ITU-R BT.601 weights, as OpenCV's grey conversion


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


def factor_vae_score(codes, factors, batch_size=64, num_train=10_000, num_eval=5000,
                     threshold=COLLAPSED_STD, seed=0):
    """The FactorVAE disentanglement score (Kim & Mnih, 2018): accuracy of a majority-vote classifier.

    Each latent is divided by its standard deviation over the images, and latents with a standard
    deviation below `threshold` (collapsed to the prior) are left out. Each vote fixes one factor k
    at random, draws `batch_size` images that share its value, and takes the latent whose
    normalised variance over them is smallest:

        vote = (argmin_j Var_l[z_j(x_l) / s_j], k),   v_k(x_l) = v,   s_j = Std_x[z_j(x)]

    The classifier maps each latent to the factor it was voted for most in `num_train` votes; the
    score is its accuracy on `num_eval` more. A code whose factor k lives in one latent alone
    always votes for that latent; unlike the beta-VAE score, it needs no linear classifier, so it
    does not reward a factor spread over several latents. Chance level is about 1/K.

    Differences from the paper: the images come from the given pool (the test split, whose factors
    are drawn uniformly), as `beta_vae_score` takes them, instead of being rendered with the factor
    fixed; the settings are disentanglement_lib's (L = 64, 10,000 train and 5,000 eval votes, a
    standard deviation threshold of 0.05) rather than the paper's. Drawn from a pool, votes cost no
    encoding, so these settings take under a second.

    Returns:
        The held-out accuracy, a float in [0, 1] (0 when every latent is collapsed).
    """
    codes, factors = _paired(codes, factors)
    if batch_size < 2 or min(num_train, num_eval) < 1:
        raise ValueError(f"Expected batches of at least 2 images and at least 1 vote of each kind, received "
                         f"batch_size={batch_size}, num_train={num_train}, num_eval={num_eval}.")
    scale = codes.std(axis=0, ddof=1) if len(codes) > 1 else np.zeros(codes.shape[1])
    active = scale >= threshold
    if not active.any():
        return 0.0
    normalised = codes[:, active] / scale[active]
    rng = np.random.default_rng(seed)
    train = _factor_votes(normalised, factors, batch_size, num_train, rng)
    classifier = train.argmax(axis=0)  # the factor each latent was voted for most
    test = _factor_votes(normalised, factors, batch_size, num_eval, rng)
    return float(test[classifier, np.arange(test.shape[1])].sum() / test.sum())


def dci(codes, factors, test_fraction=0.2, num_trees=DCI_TREES, seed=0):
    """Disentanglement, completeness and informativeness (Eastwood & Williams, 2018), each in [0, 1].

    One classifier per factor predicts v_k from the latents; its feature importances, column k of
    R `[D, K]`, say how much each latent serves that factor. With P_jk = R_jk / sum_k R_jk and
    H_K the entropy in base K:

        disentanglement = sum_j rho_j (1 - H_K(P_j.)),   rho_j = sum_k R_jk / sum_jk R_jk
        completeness    = sum_k w_k (1 - H_D(R_.k / sum_j R_jk)),   w_k = sum_j R_jk / sum_jk R_jk

    Disentanglement is 1 when each latent serves one factor (latents that serve none weigh
    little); completeness is 1 when each factor lives in one latent; informativeness is the
    classifiers' mean accuracy on the held-out `test_fraction` of the images.

    The classifiers are extremely randomised trees (Geurts et al., 2006) that try every latent at each
    split, `num_trees` of them with at least `DCI_LEAF` images per leaf, where disentanglement_lib
    uses sklearn's gradient-boosted trees. On the bundled 10-latent dSprites beta-VAE, gradient
    boosting takes about 4 minutes on two cores; these take about 2 s, and their disentanglement
    and completeness are within 0.03 of its own (their informativeness is higher, 0.64 against
    0.52: 100 boosting rounds underfit the 32 positions). Eastwood & Williams used random forests and the
    lasso, as regressors; these are classifiers, since the factors are discrete. Like every DCI,
    the values depend on the predictor: deeper trees fit noise with collapsed latents and lower D.

    Returns:
        dict with `disentanglement`, `completeness`, `informativeness` and `importance` (R, `[D, K]`).
    """
    from sklearn.ensemble import ExtraTreesClassifier

    codes, factors = _paired(codes, factors)
    order = np.random.default_rng(seed).permutation(len(codes))
    cut = len(codes) - max(1, int(round(test_fraction * len(codes))))
    if cut < 1:
        raise ValueError(f"Expected at least 2 images to split into train and test, received {len(codes)}.")
    train, test = order[:cut], order[cut:]
    importance = np.zeros((codes.shape[1], factors.shape[1]))
    accuracy = []
    for k, factor in enumerate(factors.T):
        forest = ExtraTreesClassifier(num_trees, max_features=None, min_samples_leaf=DCI_LEAF, n_jobs=-1,
                                      random_state=seed)
        with warnings.catch_warnings():  # small pools have many classes per image: still classes
            warnings.filterwarnings("ignore", "The number of unique classes", UserWarning)
            forest.fit(codes[train], factor[train])
        importance[:, k] = forest.feature_importances_
        accuracy.append(forest.score(codes[test], factor[test]))
    return {"disentanglement": _weighted_specificity(importance), "completeness": _weighted_specificity(importance.T),
            "informativeness": float(np.mean(accuracy)), "importance": importance}


def laplacian_variance(images):
    """Sharpness: the variance over each image of its 3x3 Laplacian, averaged over the images.

        L = x[i-1, j] + x[i+1, j] + x[i, j-1] + x[i, j+1] - 4 x[i, j],   s = mean_n Var_ij(L_n)

    on the interior pixels (no padding), for images in [0, 1] (values are 255^2 times smaller than
    OpenCV's on 8-bit images). Blur lowers it, a flat image has 0. Colour images are read as their
    luma, 0.299 R + 0.587 G + 0.114 B, as grey images are.

    Args:
        images: `[N, H, W]` or `[N, H, W, C]` with C = 1 or 3, H and W at least 3.

    Returns:
        A float.
    """
    x = np.asarray(images, np.float64)
    if x.ndim == 4 and x.shape[-1] in (1, 3):
        x = x[..., 0] if x.shape[-1] == 1 else x @ LUMA
    if x.ndim != 3 or not len(x) or min(x.shape[1:]) < 3:
        raise ValueError(f"Expected images [N, H, W] or [N, H, W, 1 or 3] of at least 3x3 pixels, received shape "
                         f"{np.shape(images)}.")
    laplacian = x[:, :-2, 1:-1] + x[:, 2:, 1:-1] + x[:, 1:-1, :-2] + x[:, 1:-1, 2:] - 4 * x[:, 1:-1, 1:-1]
    return float(np.mean(np.var(laplacian, axis=(1, 2))))


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


def _factor_votes(normalised, factors, batch_size, num_votes, rng, chunk=1000):
    """The FactorVAE score's votes as counts `[K, D]`: for each vote a random factor k, the images
    of a batch sharing its value (drawn like `beta_vae_score`'s pairs) and the latent of least
    variance over them. In chunks, so that memory stays bounded for wide codes."""
    counts = np.zeros((factors.shape[1], normalised.shape[1]), np.int64)
    for start in range(0, num_votes, chunk):
        n = min(chunk, num_votes - start)
        k = rng.integers(0, factors.shape[1], size=n)
        anchors = np.repeat(rng.integers(0, len(normalised), size=(n, 1)), batch_size, axis=1)
        batch = np.empty_like(anchors)
        for factor in range(factors.shape[1]):
            rows = k == factor
            batch[rows] = _same_value_partner(factors[:, factor], anchors[rows], rng)
        np.add.at(counts, (k, normalised[batch].var(axis=1, ddof=1).argmin(axis=1)), 1)
    return counts


def _weighted_specificity(importance):
    """DCI's sum_j rho_j (1 - H_K(P_j.)) of an importance matrix `[D, K]` (rows: what is scored)."""
    importance = np.abs(importance)
    total = importance.sum()
    if total <= 0:  # nothing predicts anything
        return 0.0
    if importance.shape[1] < 2:  # one column: every row serves it alone
        return 1.0
    rows = importance.sum(axis=1)
    p = importance / np.maximum(rows, 1e-300)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.sum(np.where(p > 0, p * np.log(p), 0.0), axis=1) / np.log(importance.shape[1])
    return float(np.sum(rows / total * (1 - entropy)))
