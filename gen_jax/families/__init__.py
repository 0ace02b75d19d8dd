"""Model families: how each kind of generative model is built, trained, evaluated and sampled."""
