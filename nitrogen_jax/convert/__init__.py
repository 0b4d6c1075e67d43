"""Weight importers: the public release checkpoint and transformers SigLIP towers."""
