"""twinode's Hydra configs (``pkg://twinode.configs``): train.yaml and its config groups."""
