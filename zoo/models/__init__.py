"""One module per variant; importing this package registers them all."""

from zoo.models.ae import AE
from zoo.models.base import LatentVariableModel
from zoo.models.beta_vae import BetaVAE
from zoo.models.cvae import CVAE
from zoo.models.hvae import HVAE
from zoo.models.iwae import IWAE
from zoo.models.vae import VAE
from zoo.models.vaegan import VAEGAN
from zoo.models.vqvae import VQVAE

__all__ = ["AE", "BetaVAE", "CVAE", "HVAE", "IWAE", "LatentVariableModel", "VAE", "VQVAE"]
