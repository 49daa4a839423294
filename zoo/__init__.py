"""VAE zoo: latent-variable models on Keras 3 + TensorFlow Probability.

    import zoo
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=16)
    model = zoo.load_model("runs/vae")        # a finished run directory
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ start-up chatter; set it to 0 to see it

__version__ = "0.1.0"

from zoo import models  # noqa: E402,F401  (registers every variant)
from zoo.artifacts import load_model  # noqa: E402
from zoo.registry import get_class, list_models  # noqa: E402


def create(name, **overrides):
    """Builds the registered model `name`; `overrides` are its constructor arguments.

    Example:
        model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=16)

    Raises:
        ValueError: unknown name (the message lists the known ones) or bad arguments.
    """
    return get_class(name)(**overrides)


__all__ = ["create", "list_models", "load_model", "get_class", "__version__"]
