"""The ELBO's decomposition and the aggregate posterior's statistics that the disentangling VAEs
(`beta_tcvae`, `factor_vae`, `dip_vae`) penalise, in one place.

The aggregate posterior q(z) = E_p(x)[q(z|x)] is what disentanglement is about: a code whose
dimensions are independent under q(z) is factorised. Averaged over the data, the KL term of the
ELBO splits into three parts (Chen et al., 2018):

    E_p(x)[KL(q(z|x) || p(z))] = I_q(x; z)                        index-code mutual information
                               + KL(q(z) || prod_d q(z_d))         total correlation (TC)
                               + sum_d KL(q(z_d) || p(z_d))        dimension-wise KL

q(z) and its marginals q(z_d) are mixtures over the whole data set; here they are estimated from
a minibatch of M posteriors q(z|x_j) and one sample z_i ~ q(z|x_i) of each, standing for a data
set of N images (`aggregate_log_densities`). FactorVAE estimates the same TC with a discriminator
against samples of prod_d q(z_d), which `permute_dims` draws; DIP-VAE matches the covariance of
q(z) (`aggregate_covariance`) to the identity.
"""

import tensorflow as tf
import tensorflow_probability as tfp


tfd = tfp.distributions
ESTIMATORS = ("mws", "mss")  # minibatch weighted sampling, minibatch stratified sampling


def check_estimator(estimator, dataset_size):
    """Raises a ValueError for an unknown estimator or a data set size below 1."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"Unknown estimator '{estimator}': expected one of {ESTIMATORS}.")
    if dataset_size is not None and (int(dataset_size) != dataset_size or dataset_size < 1):
        raise ValueError(f"Expected a positive integer for `dataset_size` (or None), received "
                         f"dataset_size={dataset_size!r}.")


def log_importance_weights(batch_size, dataset_size=None, estimator="mws"):
    """`[M, M]` log weights: entry (i, j) weighs q(z_i | x_j) in the estimate of q(z_i).

    MWS (minibatch weighted sampling, Chen et al.'s eq. for E[log q(z)]) weighs every pair 1/(NM).
    MSS (minibatch stratified sampling) weighs a sample's own posterior 1/N, one other (the
    next, cyclically) (N - M') / (N M') and the M' - 1 others 1/M', with M' = M - 1: the weights
    of each row sum to 1, and with N = M it is the minibatch's own mixture up to O(1/M).

    Args:
        batch_size: M, a scalar (tensor or int).
        dataset_size: N, the images the minibatch stands for; None: N = M (the minibatch is the data set).
        estimator: "mws" or "mss".
    """
    m = tf.cast(batch_size, tf.float32)
    n = m if dataset_size is None else tf.constant(float(dataset_size))
    if estimator == "mws":
        return tf.fill([batch_size, batch_size], -tf.math.log(n * m))
    others = tf.maximum(m - 1.0, 1.0)
    own = tf.eye(batch_size, dtype=tf.bool)
    following = tf.cast(tf.roll(tf.eye(batch_size), shift=1, axis=1), tf.bool)
    weights = tf.where(own, 1.0 / n, tf.where(following, (n - others) / (n * others), 1.0 / others))
    return tf.math.log(weights)


def aggregate_log_densities(z, loc, scale, dataset_size=None, estimator="mws"):
    """Minibatch estimates of log q(z_i) and log prod_d q(z_i,d) for each sample z_i.

        log q(z_i)     ~ logsumexp_j [ log w_ij + sum_d log q(z_i,d | x_j) ]
        log q(z_i,d)   ~ logsumexp_j [ log w_ij + log q(z_i,d | x_j) ]

    with the weights w of `log_importance_weights`. MWS's weights sum to 1/N per row: in
    expectation it is a lower bound, and where the posteriors of the minibatch overlap it is the
    minibatch's own mixture density lowered by log N, so its total correlation is raised by
    (D - 1) log N; the constant does not reach the gradients. MSS is the minibatch's mixture with
    the sample's own posterior weighed 1/N: close to the true value when N = M.

    Args:
        z: samples `[M, D]`, z_i ~ q(z|x_i).
        loc, scale: the diagonal Gaussian posteriors q(z|x_j) `[M, D]`.
        dataset_size, estimator: see `log_importance_weights`.

    Returns:
        `(log_qz, log_prod_qz)`, each `[M]`.
    """
    check_estimator(estimator, dataset_size)
    z, loc, scale = (tf.convert_to_tensor(a, tf.float32) for a in (z, loc, scale))
    pairwise = tfd.Normal(loc[None], scale[None]).log_prob(z[:, None])  # [i, j, d]: log q(z_i,d | x_j)
    weights = log_importance_weights(tf.shape(z)[0], dataset_size, estimator)
    log_qz = tf.reduce_logsumexp(weights + tf.reduce_sum(pairwise, -1), axis=1)
    log_prod_qz = tf.reduce_sum(tf.reduce_logsumexp(weights[..., None] + pairwise, axis=1), -1)
    return log_qz, log_prod_qz


def total_correlation(z, loc, scale, dataset_size=None, estimator="mws"):
    """The minibatch estimate of KL(q(z) || prod_d q(z_d)) = E_q(z)[log q(z) - sum_d log q(z_d)], in nats."""
    log_qz, log_prod_qz = aggregate_log_densities(z, loc, scale, dataset_size, estimator)
    return tf.reduce_mean(log_qz - log_prod_qz)


def decompose(z, loc, scale, log_prior, dataset_size=None, estimator="mws"):
    """The KL term split per example into Chen et al.'s three parts, estimated on the minibatch.

        mi   = log q(z_i|x_i) - log q(z_i)
        tc   = log q(z_i) - sum_d log q(z_i,d)
        dwkl = sum_d log q(z_i,d) - log p(z_i)

    They add up to log q(z_i|x_i) - log p(z_i), the one-sample KL estimate, whatever the
    estimator; the estimator moves nats between them (see `aggregate_log_densities`). With a
    prior that is not factorised (a learned mixture), `dwkl` is KL(prod_d q(z_d) || p(z)).

    Args:
        z, loc, scale: samples and posteriors `[M, D]`, as in `aggregate_log_densities`.
        log_prior: log p(z_i) `[M]`.

    Returns:
        dict of `[M]` tensors: `mi`, `tc`, `dwkl`.
    """
    log_qz, log_prod_qz = aggregate_log_densities(z, loc, scale, dataset_size, estimator)
    log_qz_given_x = tf.reduce_sum(tfd.Normal(loc, scale).log_prob(z), -1)
    return {"mi": log_qz_given_x - log_qz, "tc": log_qz - log_prod_qz, "dwkl": log_prod_qz - log_prior}


def permute_dims(z):
    """Samples of prod_d q(z_d) from samples of q(z) `[M, D]`: each dimension shuffled across the
    minibatch by its own permutation, which keeps every marginal and breaks every dependence
    (Kim & Mnih, 2018, Algorithm 1)."""
    order = tf.argsort(tf.random.uniform(tf.shape(z)), axis=0)
    return tf.experimental.numpy.take_along_axis(z, order, axis=0)


def aggregate_covariance(loc, scale):
    """Cov_q(z) of the minibatch's aggregate posterior (Kumar et al., 2018, DIP-VAE-II):

        Cov_q(z) = E_x[Cov_q(z|x)] + Cov_x[E_q(z|x)] = mean_j diag(scale_j^2) + Cov_j[loc_j]

    with the minibatch's (biased, 1/M) covariance of the means.

    Args:
        loc, scale: diagonal Gaussian posteriors `[M, D]`.

    Returns:
        `[D, D]`.
    """
    loc, scale = (tf.convert_to_tensor(a, tf.float32) for a in (loc, scale))
    centred = loc - tf.reduce_mean(loc, axis=0)
    count = tf.cast(tf.shape(loc)[0], tf.float32)
    return tf.linalg.diag(tf.reduce_mean(tf.square(scale), axis=0)) + tf.matmul(centred, centred, True) / count

