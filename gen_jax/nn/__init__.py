"""Neural-network layers shared by the gen_jax models."""
