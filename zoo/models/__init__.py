"""One module per variant; importing this package registers them all."""

from zoo.models.ae import AE
from zoo.models.base import LatentVariableModel
from zoo.models.cvae import CVAE
from zoo.models.vae import VAE

__all__ = ["AE", "CVAE", "LatentVariableModel", "VAE"]
