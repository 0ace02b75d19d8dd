"""Flax Linen modules of the gen_jax models."""
