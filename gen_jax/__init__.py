"""gen_jax: classic deep generative models in JAX/Flax."""
