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
        as_sevens = model.restyle(x, labels=y, to_labels=[7] * len(x))  # each image's style, drawn as a 7
    """

    conditional = True

    def __init__(self, input_shape, latent_dim=16, num_classes=10, beta=1.0, **kwargs):
        if num_classes is None:
            raise ValueError("A conditional VAE needs `num_classes` (the number of class labels), received None.")
        super().__init__(input_shape, latent_dim, beta=beta, num_classes=num_classes, **kwargs)

    def restyle(self, x, labels, to_labels):
        """Redraws each image as another class, in its own style: the mean of p(x | E[z|x, y], y').

        The encoder reads x with its own label y, so z keeps what y does not explain (a digit's
        slant, an emoji's shape); the decoder then draws that z with the label y' = `to_labels`: on
        OpenMoji, the same person emoji in another skin tone.

        Args:
            x: images `[B, H, W, C]` in [0, 1].
            labels: the class id of each image, `[B]`.
            to_labels: the class id to draw each image as, `[B]`.

        Returns:
            The restyled images `[B, H, W, C]` (a tensor, as `sample` returns).

        Raises:
            ValueError: images of the wrong shape or outside [0, 1], or labels that are not `B`
                integer class ids of this model.

        Example:
            model = zoo.create("cvae", input_shape=(64, 64, 3), latent_dim=16, num_classes=6)
            darker = model.restyle(x, labels=y, to_labels=np.full(len(x), 5))  # openmoji: tone 5, dark
        """
        x, labels = self._check_inputs(x, labels)
        to_labels = self._check_labels(to_labels)
        for name, given in (("labels", labels), ("to_labels", to_labels)):
            if given.shape.rank != 1 or (given.shape[0] is not None and x.shape[0] is not None
                                         and given.shape[0] != x.shape[0]):
                raise ValueError(f"Expected one class id in `{name}` for each of the {x.shape[0]} images, "
                                 f"received shape {tuple(given.shape)}.")
        return self.decode(self.encode(x, labels).mean(), to_labels).mean()
