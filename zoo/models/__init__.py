"""One module per variant; importing this package registers them all."""

from zoo.models.ae import AE
from zoo.models.base import LatentVariableModel
from zoo.models.beta_tcvae import BetaTCVAE
from zoo.models.beta_vae import BetaVAE
from zoo.models.cvae import CVAE
from zoo.models.dbvae import DBVAE
from zoo.models.dip_vae import DIPVAE
from zoo.models.factor_vae import FactorVAE
from zoo.models.hvae import HVAE
from zoo.models.iwae import IWAE
from zoo.models.vae import VAE
from zoo.models.vaegan import VAEGAN
from zoo.models.vqvae import VQVAE

__all__ = ["AE", "BetaTCVAE", "BetaVAE", "CVAE", "DBVAE", "DIPVAE", "FactorVAE", "HVAE", "IWAE", "LatentVariableModel", "VAE",
           "VAEGAN", "VQVAE"]
