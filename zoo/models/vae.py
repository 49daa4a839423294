"""The variational autoencoder (Kingma & Welling, 2014)."""

from zoo.models.base import LatentVariableModel
from zoo.registry import register


@register("vae")
class VAE(LatentVariableModel):
    """Gaussian q(z|x) with softplus scales, a N(0, I) (or learned) prior, trained on the ELBO.

    Everything is the base class's: the reparameterised sample z = loc + scale * eps keeps the
    one-sample ELBO differentiable, and the KL against N(0, I) is TFP's closed form.

    Example:
        model = zoo.create("vae", input_shape=(28, 28, 1), latent_dim=16)
        model.compile(optimizer="adam")
        model.fit(zoo.data.pipeline(x, batch_size=128), epochs=10)
        images = model.sample(16)
    """
