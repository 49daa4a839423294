"""A layer that reads int codes as codebook vectors, for decoders of discrete latents."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="export")
class CodebookLookup(keras.layers.Layer):
    """`codes` int [B, h, w] -> codebook vectors [B, h, w, D], sharing the model's codebook.

    The VQ-VAE's `decode` does `tf.gather(codebook, codes)`; as a layer, the lookup joins a
    functional serving decoder and converts to ONNX Gather / TFLite GATHER.

    Args:
        codebook: the model's `[K, D]` codebook variable (not copied: exports read its value).

    Example:
        vectors = CodebookLookup(model.codebook)(keras.Input((7, 7), dtype="int32"))
    """

    def __init__(self, codebook, **kwargs):
        super().__init__(**kwargs)
        self.codebook = codebook

    def call(self, codes):
        return tf.gather(self.codebook, codes)

    def compute_output_shape(self, codes_shape):
        return (*codes_shape, self.codebook.shape[-1])
