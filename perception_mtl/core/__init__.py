"""The bottom layer every other unit builds on: errors, the registry, atomic writes, the config
schema and its merge, metric keys, and the torch.distributed helpers. It imports nothing else of
the package."""
