"""VAE zoo: latent-variable models on Keras 3 + TensorFlow Probability.

    import zoo
    model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=16)
    model = zoo.load_model("runs/vae")                       # a finished run directory
    decoder = zoo.load_pretrained("cvae-mnist5k", format="onnx")   # bundled, no TensorFlow needed

Importing `zoo` does not import TensorFlow: the functions that need it import it when first
called, so an app with only numpy and onnxruntime can load a pretrained ONNX or TFLite decoder.
"""

import contextlib
import logging
import os
import sys
import tempfile

# TensorFlow's logs are hidden unless asked for (`--verbose` on the commands, or this variable):
# its C++ logger reads the level once, when TensorFlow is imported, so it is set here, first.
TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
_USER_TF_LOG_LEVEL = os.environ.get(TF_LOG_LEVEL)
os.environ.setdefault(TF_LOG_LEVEL, "3")

__version__ = "0.1.0"

from zoo.pretrained import list_pretrained, load_pretrained  # noqa: E402  (TensorFlow-free)


def import_tensorflow(verbose=False):
    """Imports TensorFlow with its logs hidden, or shown when `verbose`; returns the module.

    TensorFlow 2.21 writes lines to stderr while it loads, before its C++ logger has read
    TF_CPP_MIN_LOG_LEVEL (oneDNN and CUDA notices, "All log messages before absl::InitializeLog()"),
    so unless `verbose` (or TF_CPP_MIN_LOG_LEVEL=0) the import's stderr is held back, and shown
    only if the import fails. `verbose` sets the C++ level to 0 unless the user set it; otherwise
    the Python loggers of TensorFlow and absl show errors only. Call it before anything else
    imports TensorFlow; once TensorFlow is loaded it only returns it.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if verbose and _USER_TF_LOG_LEVEL is None:
        os.environ[TF_LOG_LEVEL] = "0"
    with contextlib.nullcontext() if verbose or os.environ[TF_LOG_LEVEL] == "0" else _held_stderr():
        import tensorflow as tf
    if not verbose:
        from absl import logging as absl_logging  # TensorFlow's own dependency, loaded with it

        absl_logging.set_verbosity(absl_logging.ERROR)
        tf.get_logger().setLevel(logging.ERROR)
    return tf


@contextlib.contextmanager
def _held_stderr():
    """Sends file descriptor 2 to a temporary file for the block; replays it if the block raises."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        except BaseException:
            os.dup2(saved, 2)
            held.seek(0)
            sys.stderr.write(held.read().decode(errors="replace"))
            raise
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


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
    import_tensorflow()
    from zoo import models, registry  # noqa: F401  (importing the models registers them)

    return registry.get_class(name)


def list_models():
    """Returns the registered model names, sorted."""
    import_tensorflow()
    from zoo import models, registry  # noqa: F401

    return registry.list_models()


def load_model(path):
    """Loads a model from a finished run directory (checksum verified) or a `.keras` file, in safe mode."""
    import_tensorflow()
    from zoo import artifacts

    return artifacts.load_model(path)


__all__ = ["create", "list_models", "load_model", "get_class", "list_pretrained", "load_pretrained",
           "import_tensorflow", "__version__"]
