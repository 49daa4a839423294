"""What a model with a discriminator trained beside it shares: D's own Adam, built at compile
time, loaded with the model and saved in training checkpoints (`factor_vae`, `vaegan`)."""

import keras


class WithDiscriminator:
    """A mixin, listed before the model class: `class FactorVAE(WithDiscriminator, VAE)`.

    The model sets `self.discriminator_learning_rate` and `self.discriminator_optimizer = None`
    in `__init__`, and defines `variable_groups()`, whose last group is D's trainable variables;
    `discriminator_betas` are Adam's (beta_1, beta_2) for D.
    """

    discriminator_betas = (0.5, 0.999)

    def compile(self, optimizer="adam", **kwargs):
        """Compiles with `optimizer` for the model and creates D's (wrapped for loss scaling when
        `optimizer` is). Both are built here, so that a checkpoint of their state loads before a step."""
        super().compile(optimizer=optimizer, **kwargs)
        beta_1, beta_2 = self.discriminator_betas
        own = keras.optimizers.Adam(self.discriminator_learning_rate, beta_1=beta_1, beta_2=beta_2)
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):
            own = keras.optimizers.LossScaleOptimizer(own)
        self.discriminator_optimizer = own
        *model_groups, critic = self.variable_groups()
        self.optimizer.build([v for group in model_groups for v in group])
        self.discriminator_optimizer.build(critic)

    def compile_from_config(self, config):
        """`load_model` compiles through `compile` (Keras skips a custom one), so that D's optimizer
        exists, built, when its saved state is restored."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    @property
    def extra_optimizers(self):
        """Optimizers besides `self.optimizer` whose state checkpoints save (`zoo.callbacks`)."""
        return [self.discriminator_optimizer] if self.discriminator_optimizer is not None else []
