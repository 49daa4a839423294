"""VAE zoo: latent-variable models on Keras 3 + TensorFlow Probability.

    import zoo
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=16)
    model = zoo.load_model("runs/vae")                       # a finished run directory
    decoder = zoo.load_pretrained("cvae-mnist5k", format="onnx")   # bundled, no TensorFlow needed

Importing `zoo` does not import TensorFlow: the functions that need it import it when first
called, so an app with only numpy and onnxruntime can load a pretrained ONNX or TFLite decoder.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; set it to 0 to see it

__version__ = "0.1.0"

from zoo.pretrained import list_pretrained, load_pretrained  # noqa: E402  (TensorFlow-free)


def create(name, **overrides):
    """Builds the registered model `name`; `overrides` are its constructor arguments.

    Example:
        model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=16)

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad arguments.
    """
    return get_class(name)(**overrides)


def get_class(name):
    """Returns the model class registered as `name`; a ValueError lists the known names."""
    from zoo import models, registry  # noqa: F401  (importing the models registers them)

    return registry.get_class(name)


def list_models():
    """Returns the registered model names, sorted."""
    from zoo import models, registry  # noqa: F401

    return registry.list_models()


def load_model(path):
    """Loads a model from a finished run directory (checksum verified) or a `.keras` file, in safe mode."""
    from zoo import artifacts

    return artifacts.load_model(path)


__all__ = ["create", "list_models", "load_model", "get_class", "list_pretrained", "load_pretrained", "__version__"]
