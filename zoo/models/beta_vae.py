"""beta-VAE (Higgins et al., 2017) with KL warm-up and capacity annealing (Burgess et al., 2018)."""

import tensorflow as tf

from zoo.models.vae import VAE
from zoo.registry import register


@register("beta_vae")
class BetaVAE(VAE):
    """A VAE whose KL term is weighted to push q(z|x) towards the factorised prior.

    Only the objective differs from the VAE's. With per-example reconstruction r and KL k:

        beta objective:      E[r] + w(t) * E[k],    w(t) = beta * min(1, t / warmup_steps)
        capacity objective:  E[r] + gamma * |E[k] - C(t)|,   C(t) = capacity * min(1, t / capacity_steps)

    where t is the optimizer step. beta > 1 trades reconstruction for disentangled latents (one
    generative factor per latent, which latent traversals show); the capacity objective instead
    lets the KL grow to C nats so the latents fill up one factor at a time.

    Args:
        beta: KL weight (the capacity objective ignores it).
        warmup_steps: steps over which the KL weight rises from 0 to beta (0: no warm-up).
        capacity: C_max in nats; set it to use the capacity objective.
        capacity_steps: steps over which C rises linearly from 0 to C_max.
        gamma: weight of |KL - C| in the capacity objective.

    Example:
        model = zoo.create("beta_vae", input_shape=(64, 64, 1), latent_dim=10, beta=4.0)
    """

    def __init__(self, input_shape, latent_dim=10, beta=4.0, warmup_steps=0, capacity=None,
                 capacity_steps=10_000, gamma=100.0, **kwargs):
        if beta < 0:
            raise ValueError(f"Expected beta >= 0, received beta={beta}.")
        if capacity is not None and capacity < 0:
            raise ValueError(f"Expected capacity >= 0 nats, received capacity={capacity}.")
        super().__init__(input_shape, latent_dim, **kwargs)
        self.beta, self.warmup_steps, self.gamma = float(beta), int(warmup_steps), float(gamma)
        self.capacity = None if capacity is None else float(capacity)
        self.capacity_steps = int(capacity_steps)

    def _ramp(self, steps):
        """min(1, t / steps) at the optimizer's current step t (1 before compile or when steps is 0)."""
        if not steps or self.optimizer is None:
            return 1.0
        return tf.minimum(1.0, tf.cast(self.optimizer.iterations, tf.float32) / steps)

    def objective(self, reconstruction, kl):
        if self.capacity is not None:
            target = self.capacity * self._ramp(self.capacity_steps)
            return tf.reduce_mean(reconstruction) + self.gamma * tf.abs(tf.reduce_mean(kl) - target)
        return tf.reduce_mean(reconstruction) + self.beta * self._ramp(self.warmup_steps) * tf.reduce_mean(kl)

    def get_config(self):
        return {**super().get_config(), "beta": self.beta, "warmup_steps": self.warmup_steps,
                "capacity": self.capacity, "capacity_steps": self.capacity_steps, "gamma": self.gamma}
