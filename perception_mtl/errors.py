"""The error of a bad setting, shared by the schema (`config.py`) and the leaf modules below it
(`distributed.py`), so that a leaf needs nothing above it to raise one."""


class ConfigError(ValueError):
    """A config file or override is invalid; the message says what is valid."""
