"""The FactorVAE score, DCI and the Laplacian-variance sharpness on inputs whose answer is known."""

import numpy as np
import pytest

from zoo import data, metrics

K = len(data.DSPRITES_SIZES)


@pytest.fixture(scope="module")
def factors():
    rng = np.random.default_rng(0)
    return np.stack([rng.integers(0, size, 5000) for size in data.DSPRITES_SIZES], axis=1)


@pytest.fixture(scope="module")
def perfect(factors):
    """One latent per factor (standardised) and five unused noise latents."""
    standard = (factors - factors.mean(0)) / factors.std(0)
    return np.c_[standard, np.random.default_rng(1).normal(size=(len(factors), 5))]


def rotation(dim, seed):
    return np.linalg.qr(np.random.default_rng(seed).normal(size=(dim, dim)))[0]


def pair_rotated(perfect):
    """x and y turned by 45 degrees: latents 3 and 4 each hold (x +- y) / sqrt(2)."""
    code = perfect.copy()
    code[:, 3], code[:, 4] = (perfect[:, 3] + perfect[:, 4]) / 2**0.5, (perfect[:, 3] - perfect[:, 4]) / 2**0.5
    return code


# --- FactorVAE score -----------------------------------------------------------------------------


def test_factor_vae_score_is_one_for_a_perfect_code_and_lower_rotated(factors, perfect):
    assert metrics.factor_vae_score(perfect, factors) == 1.0
    # A random rotation mixes every factor into every latent. The score drops, by how much depends on
    # the rotation: the argmin still tends to the latent with most weight on the fixed factor.
    rotated = [metrics.factor_vae_score(perfect @ rotation(perfect.shape[1], seed), factors) for seed in range(5)]
    assert max(rotated) < 0.9 and np.mean(rotated) < 0.8


def test_factor_vae_score_of_two_mixed_factors_is_four_fifths(factors, perfect):
    # Fixing x leaves both mixed latents with half their variance: the argmin picks either, so
    # whichever factor the classifier maps each to, x and y votes are right half the time: 3/5 + 2/5 * 1/2.
    assert metrics.factor_vae_score(pair_rotated(perfect), factors) == pytest.approx(0.8, abs=0.03)


def test_factor_vae_score_is_chance_for_noise_and_drops_collapsed_latents(factors, perfect):
    noise = np.random.default_rng(2).normal(size=perfect.shape)
    assert abs(metrics.factor_vae_score(noise, factors) - 1 / K) < 0.05
    # A constant latent has zero variance in every batch: without the pruning it would win every vote.
    constant = np.c_[np.zeros(len(perfect)), perfect, np.full(len(perfect), 0.01) * perfect[:, :1]]
    assert metrics.factor_vae_score(constant, factors) == 1.0
    assert metrics.factor_vae_score(np.zeros((100, 3)), factors[:100]) == 0.0
    with pytest.raises(ValueError, match="batches of at least 2 images"):
        metrics.factor_vae_score(perfect, factors, batch_size=1)


# --- DCI -----------------------------------------------------------------------------------------


def test_dci_is_one_for_a_perfect_code_and_low_rotated(factors, perfect):
    scores = metrics.dci(perfect, factors)
    assert scores["disentanglement"] > 0.99 and scores["completeness"] > 0.99 and scores["informativeness"] == 1.0
    np.testing.assert_array_equal(scores["importance"].argmax(0), np.arange(K))  # each factor's latent
    assert scores["importance"][K:].max() < 0.01  # the noise latents serve nothing
    rotated = metrics.dci(perfect @ rotation(perfect.shape[1], 0), factors)
    assert rotated["disentanglement"] < 0.4 and rotated["completeness"] < 0.4


def test_dci_of_two_mixed_factors_matches_its_entropies(factors, perfect):
    # Latents 3 and 4 each serve x and y equally: 1 - H_K(1/2, 1/2) = 1 - ln 2 / ln K for those two
    # of the five used latents; and x and y each live in two of the ten latents: 1 - ln 2 / ln 10.
    scores = metrics.dci(pair_rotated(perfect), factors)
    assert scores["disentanglement"] == pytest.approx(1 - 2 / K * np.log(2) / np.log(K), abs=0.05)
    assert scores["completeness"] == pytest.approx(1 - 2 / K * np.log(2) / np.log(10), abs=0.06)
    assert scores["informativeness"] > 0.8  # the pair still determines x and y


def test_dci_of_noise_is_near_zero_and_one_latent_is_complete(factors):
    noise = metrics.dci(np.random.default_rng(3).normal(size=(len(factors), 4)), factors)
    assert noise["disentanglement"] < 0.05 and noise["completeness"] < 0.05
    single = metrics.dci(factors[:, 3:4].astype(float), factors[:, 3:4])
    assert single["disentanglement"] == single["completeness"] == single["informativeness"] == 1.0


# --- Laplacian variance --------------------------------------------------------------------------


def checkerboard(size=16):
    return (np.indices((size, size)).sum(0) % 2).astype(np.float64)


def box_blur(image):
    padded = np.pad(image, 1, mode="edge")
    return sum(padded[i:i + image.shape[0], j:j + image.shape[1]] for i in range(3) for j in range(3)) / 9


def test_laplacian_variance_of_a_checkerboard_is_sixteen_and_blur_lowers_it():
    sharp = checkerboard()
    assert metrics.laplacian_variance(sharp[None]) == pytest.approx(16.0)  # the Laplacian is +-4 everywhere
    blurred = metrics.laplacian_variance(box_blur(sharp)[None, ..., None])
    assert blurred < 1.0
    assert metrics.laplacian_variance(np.full((2, 8, 8, 1), 0.7)) == 0.0


def test_laplacian_variance_reads_colour_as_luma_and_averages_images():
    sharp, flat = checkerboard(), np.zeros((16, 16))
    grey = np.stack([sharp, flat])
    assert metrics.laplacian_variance(grey) == pytest.approx(8.0)  # the mean of 16 and 0
    colour = np.repeat(grey[..., None], 3, axis=-1)
    assert metrics.laplacian_variance(colour) == pytest.approx(8.0)
    red = np.stack([sharp, flat, flat], axis=-1)[None]
    assert metrics.laplacian_variance(red) == pytest.approx(16.0 * 0.299**2)
    for bad in (np.zeros((2, 2, 8)), np.zeros((1, 8, 8, 2)), np.zeros((8, 8))):
        with pytest.raises(ValueError, match="Expected images"):
            metrics.laplacian_variance(bad)
