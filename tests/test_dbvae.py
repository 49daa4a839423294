"""The debiasing VAE: its loss, its resampling weights, the resampled batches, the biased dataset."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import zoo
from zoo import training
from zoo.data.split import ArraySplit
from zoo.models.dbvae import rarity_weights


def tiny(**kwargs):
    return zoo.create("dbvae", input_shape=(16, 16, 1), latent_dim=3, width=8, hidden=16, **kwargs)


def test_rarity_weights_favour_the_rare_codes():
    """950 codes around 0 and 50 around 5 in one dimension, with a second dimension of noise that
    both groups share: the rare 5% get far more than their share of the draws."""
    rng = np.random.default_rng(0)
    codes = np.concatenate([rng.normal(0, 1, (950, 1)), rng.normal(5, 0.3, (50, 1))])
    codes = np.concatenate([codes, rng.normal(0, 1, (1000, 1))], 1)
    w = rarity_weights(codes)
    assert w.sum() == pytest.approx(1.0) and (w > 0).all()
    assert w[950:].sum() > 0.125  # from 5% of the draws: 2.5 times as many
    assert np.median(w[950:]) > 3 * np.median(w[:950])
    uniform = rarity_weights(codes, alpha=1e6)  # alpha smooths towards uniform draws
    np.testing.assert_allclose(uniform, 1 / 1000, rtol=1e-3)


def test_sampling_probabilities_favour_rare_positives_and_keep_the_class_share():
    """Positives are a bright square, in the top-left corner for 95 of them and bottom-right for 5;
    negatives are blank. Even an untrained encoder maps the two positions apart, and the 5 rare
    positives are drawn more often than the common ones, while negatives stay uniform."""
    keras.utils.set_random_seed(0)
    x = np.zeros((200, 16, 16, 1), np.float32)
    x[:95, 2:7, 2:7] = 1.0
    x[95:100, 9:14, 9:14] = 1.0
    y = np.r_[np.ones(100), np.zeros(100)].astype(np.int64)
    p = tiny().sampling_probabilities(x, y)
    assert p.sum() == pytest.approx(1.0)
    assert p[:100].sum() == pytest.approx(0.5)  # the positives keep their share
    np.testing.assert_allclose(p[100:], 1 / 200)
    assert p[95:100].min() > 5 * np.median(p[:95])
    assert tiny(debias=False).sampling_probabilities(x, y) is None


def test_the_vae_terms_count_the_positives_only():
    model = tiny(classifier_weight=2.0)
    x = np.random.default_rng(0).uniform(size=(4, 16, 16, 1)).astype(np.float32)
    negatives = model.loss_terms(x, np.zeros(4, np.int32))
    assert float(negatives["reconstruction"]) == 0.0 and float(negatives["kl"]) == 0.0
    logits = model.encoder(x)[:, -1]
    bce = tf.reduce_mean(tf.nn.softplus(logits))  # -log(1 - sigmoid(logit)): every label 0
    np.testing.assert_allclose(negatives["loss"], 2.0 * bce, rtol=1e-5)
    np.testing.assert_allclose(model.classify(x), tf.sigmoid(logits), rtol=1e-6)
    positives = model.loss_terms(x, np.ones(4, np.int32))
    assert float(positives["reconstruction"]) > 0 and float(positives["kl"]) > 0
    with pytest.raises(ValueError, match="dbvae trains on labelled images"):
        model.loss_terms(x)
    with pytest.raises(ValueError, match="dbvae is not conditional"):
        tiny(num_classes=2)


def test_resampled_batches_follow_the_probabilities_when_they_change():
    """No draw is made ahead of its step: after the probabilities change, the next batch follows them;
    and each step's draw is seeded by its number, so a resumed run draws what the whole run would."""
    x = np.arange(10, dtype=np.float32).reshape(10, 1, 1, 1) / 10
    split = ArraySplit("toy", "train", x, np.arange(10) % 2, ["a", "b"])
    ds, log_p, _ = training.resampled_batches(split, 8, steps=range(0, 4), seed=3)
    batches = iter(ds)
    first = next(batches)[0].numpy().ravel()
    assert len(set(first)) > 1
    log_p.assign(np.where(np.arange(10) == 7, 0.0, -1e9).astype(np.float32))  # all mass on image 7
    images, labels = next(batches)
    np.testing.assert_allclose(images.numpy().ravel(), 0.7)
    assert (labels.numpy() == 1).all()
    whole = [b[0].numpy() for b in training.resampled_batches(split, 8, steps=range(0, 4), seed=3)[0]]
    resumed = [b[0].numpy() for b in training.resampled_batches(split, 8, steps=range(2, 4), seed=3)[0]]
    np.testing.assert_array_equal(resumed, whole[2:])


def test_the_biased_openmoji_split_keeps_five_percent_of_the_darkest_persons():
    from zoo.data import openmoji

    table = openmoji.catalog()
    _, y_train = openmoji.persons("train", image_size=4)
    x_test, y_test = openmoji.persons("test", image_size=4)
    train, test = table.split("train"), table.split("test")
    assert len(y_test) == len(test) and y_test.sum() == 198  # the test split is openmoji's, whole
    toned = {b for b, t in zip(table.bases, table.tones) if t and b}
    person = np.array([b in toned for b in table.bases])
    per_tone = [int((person[train] & (table.tones[train] == t)).sum()) for t in range(6)]
    assert per_tone == [297] * 6
    assert len(y_train) == len(train) - 2 * (297 - 15) and y_train.sum() == 4 * 297 + 2 * 15
    tones = openmoji.persons_tones("train")
    assert [int(((tones == t) & (y_train == 1)).sum()) for t in range(6)] == [297] * 4 + [15] * 2


def test_a_run_resamples_every_epoch_and_reports_its_classifier(tmp_path, mnist_small, monkeypatch):
    """Sevens against the other digits: the training loop asks the model for new probabilities at
    the start of each epoch, and the run's metrics hold the classifier's accuracy and recall."""
    from zoo.models.dbvae import DBVAE

    (x, y), (xt, yt) = mnist_small
    path = tmp_path / "sevens.npz"
    np.savez(path, x_train=x, y_train=(y == 7).astype(np.int64), x_test=xt, y_test=(yt == 7).astype(np.int64))
    calls = []
    original = DBVAE.sampling_probabilities
    monkeypatch.setattr(DBVAE, "sampling_probabilities", lambda self, *a: calls.append(len(a[0])) or original(self, *a))
    manifest = training.train("dbvae", out=str(tmp_path / "run"), dataset=str(path), epochs=2, latent_dim=3,
                              width=8, hidden=16, nll_samples=0, print_fn=lambda *a, **k: None)
    assert calls == [360, 360]  # the training images (the validation split held out), once per epoch
    metrics = manifest["metrics"]
    assert 0 <= metrics["classifier_recall"] <= 1 and 0 <= metrics["classifier_accuracy"] <= 1
    with pytest.raises(Exception, match="classifies two classes"):
        training.train("dbvae", out=str(tmp_path / "ten"), dataset="digits", epochs=1, print_fn=lambda *a, **k: None)
