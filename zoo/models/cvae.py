"""The conditional VAE (Sohn et al., 2015): ask the decoder for a "7"."""

from zoo.models.beta_vae import BetaVAE
from zoo.registry import register


@register("cvae")
class CVAE(BetaVAE):
    """A VAE conditioned on a class label y: q(z|x, y) and p(x|z, y), with p(z) = N(0, I).

    The one-hot label joins the encoder input as extra channels and joins z at the decoder (the
    base class does both whenever `num_classes` is set), so every signature takes `labels`.
    Because y is given, z only has to carry the style (slant, thickness) of a digit.

    The KL weight `beta` (1 by default: the plain ELBO) comes from `BetaVAE`, with its warm-up and
    capacity options. A weight above 1 keeps each class's posteriors closer to N(0, I), so more
    draws z ~ p(z) land where the decoder has learnt to draw the requested class.

    Example:
        model = zoo.create("cvae", input_shape=(28, 28, 1), latent_dim=16, num_classes=10)
        sevens = model.sample(8, labels=[7] * 8)
    """

    conditional = True

    def __init__(self, input_shape, latent_dim=16, num_classes=10, beta=1.0, **kwargs):
        if num_classes is None:
            raise ValueError("A conditional VAE needs `num_classes` (the number of class labels), received None.")
        super().__init__(input_shape, latent_dim, beta=beta, num_classes=num_classes, **kwargs)
