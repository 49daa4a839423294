"""The serving networks: the deterministic parts of a model as small Keras models that exporters convert.

The serving decoder (the deterministic part of p(x|z)) is a functional model: named inputs and
outputs, no TFP objects and no Python-side checks, so ONNX and TFLite see one clean graph.
Sampling (z ~ p(z)) stays outside it, in the caller (`export.runtime.Decoder.generate`). The
serving encoder runs the model's own `export_encoder` function (the `encode` signature's), so the
exported encoder cannot drift from the SavedModel's.
"""

import keras
import tensorflow as tf

from export.codebook_lookup import CodebookLookup
from export.one_hot import OneHot
from zoo import likelihoods


def serving_decoder(model):
    """Returns the model's serving decoder: named inputs -> `{"mean", ...the likelihood's parameters}`.

    A model with a codebook (`num_codes`, the VQ-VAE) gets `codes_decoder`, every other model
    `latent_decoder`. A model whose decoder needs other inputs supplies its own by defining a
    `serving_decoder()` method that returns such a functional model; it wins over both.

    Args:
        model: a `zoo` model (a `LatentVariableModel`).

    Returns:
        A functional `keras.Model` whose outputs equal the `decode` SavedModel signature's.
    """
    own = getattr(model, "serving_decoder", None)
    if callable(own):
        return own()
    return codes_decoder(model) if getattr(model, "num_codes", None) else latent_decoder(model)


def latent_decoder(model):
    """The decoder of a Gaussian-latent model: `z` [B, D] (and int32 `labels` [B]) -> images.

    Mirrors `LatentVariableModel.decode`: the one-hot label joins z before the backbone.
    """
    z = keras.Input((model.latent_dim,), name="z")
    inputs, features = {"z": z}, z
    if model.num_classes:
        labels = keras.Input((), dtype="int32", name="labels")
        inputs["labels"] = labels
        features = keras.ops.concatenate([z, OneHot(model.num_classes)(labels)], axis=-1)
    return _image_outputs(model, inputs, features)


def codes_decoder(model):
    """The decoder of a VQ-VAE: int32 `codes` [B, h, w] -> codebook vectors -> images."""
    codes = keras.Input(model.grid_shape, dtype="int32", name="codes")
    return _image_outputs(model, {"codes": codes}, CodebookLookup(model.codebook)(codes))


def _image_outputs(model, inputs, features):
    """The backbone on `features`, then the likelihood's parameters (`zoo.likelihoods.parameters`):
    `mean` in [0, 1] and what p(x|z) needs besides, as the SavedModel's `decode` serves them. A
    per-channel Gaussian scale is a weight, not an output: the metadata carries it."""
    outputs = likelihoods.parameters(model.decoder(features), model.likelihood, model.image_shape[-1])
    return keras.Model(inputs, outputs, name="serving_decoder")


def serving_prior(model):
    """The one-step network of a model's autoregressive prior over codes: int32 `codes` [B, h, w]
    -> `{"logits": [B, h, w, K]}`, the logits of every position given the codes before it; None
    for a model without one. Sampling loops over positions outside it (`export.runtime.sample_codes`)."""
    network = getattr(model, "prior_network", None)
    if network is None:
        return None
    codes = keras.Input(model.grid_shape, dtype="int32", name="codes")
    return keras.Model({"codes": codes}, {"logits": network(codes)}, name="serving_prior")


class ServingEncoder(keras.Model):
    """q(z|x)'s parameters (or z, or codes) from named inputs: `model.export_encoder()` as a Keras
    model, `{"x", ...}` -> `{"loc", "scale"}` for Gaussian latents (see `LatentVariableModel.export_encoder`).

    Attributes:
        specs: the input `tf.TensorSpec`s, batch axis dynamic.
    """

    def __init__(self, model):
        super().__init__(name="serving_encoder")
        self.zoo_model = model
        self.function, self.specs = model.export_encoder()
        self.built = True

    def call(self, inputs):
        return self.function(**inputs)


def serving_encoder(model):
    """The model's serving encoder (`ServingEncoder`)."""
    return ServingEncoder(model)


def output_names(network):
    """The sorted output names of a serving network (run once on a batch of zeros for an encoder)."""
    if isinstance(network, ServingEncoder):
        zeros = {spec.name: tf.zeros([1, *spec.shape[1:]], spec.dtype) for spec in network.specs}
        return sorted(network(zeros).keys())
    return sorted(network.output.keys())


def _specs(network):
    specs = getattr(network, "specs", None)
    return specs or [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in network.inputs]


def input_signature(network):
    """The export signature of a serving network: one dict argument of named `tf.TensorSpec`s
    with a dynamic batch axis."""
    return [{spec.name: spec for spec in _specs(network)}]


def input_specs(network):
    """The network's inputs as plain facts, the main input first: `[{"name", "dtype", "shape"}]`
    with the batch axis left out of `shape`."""
    specs = [{"name": t.name, "dtype": tf.as_dtype(t.dtype).name, "shape": list(t.shape[1:])} for t in _specs(network)]
    return sorted(specs, key=lambda spec: spec["name"] == "labels")
