"""A one-hot layer that survives full-integer TFLite quantization."""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="export")
class OneHot(keras.layers.Layer):
    """One-hot class vectors as rows of an identity matrix: `labels` [B] int -> [B, num_classes].

    The same values as `tf.one_hot`, but as a GATHER: the TFLite converter's full-integer ONE_HOT
    ignores its output scale (a "1" became 2.1 once it was concatenated with z), while a gathered
    row is quantized like any constant.

    Args:
        num_classes: length of the one-hot vectors.

    Example:
        OneHot(3)(np.array([2, 0]))  # [[0, 0, 1], [1, 0, 0]]
    """

    def __init__(self, num_classes, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes

    def call(self, labels):
        return tf.gather(tf.eye(self.num_classes), labels)

    def compute_output_shape(self, labels_shape):
        return (*labels_shape, self.num_classes)

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}
