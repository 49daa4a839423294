"""One registry: model name -> model class, filled by the `@register` decorator."""

import keras

_MODELS = {}


def register(name):
    """Registers a model class under `name` and makes it Keras-serializable.

    Example:
        @register("vae")
        class VAE(LatentVariableModel): ...
    """

    def wrap(cls):
        if name in _MODELS:
            raise ValueError(f"A model named '{name}' is already registered by {_MODELS[name].__name__}.")
        cls = keras.saving.register_keras_serializable(package="zoo")(cls)
        cls.variant = name
        _MODELS[name] = cls
        return cls

    return wrap


def list_models():
    """Returns the registered model names, sorted."""
    return sorted(_MODELS)


def get_class(name):
    """Returns the class registered as `name`; a ValueError lists the known names."""
    try:
        return _MODELS[name]
    except KeyError:
        raise ValueError(f"Unknown model '{name}'. Known models: {', '.join(list_models())}.") from None
