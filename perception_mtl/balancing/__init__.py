"""Balancer registry: `BALANCERS.get(name)(tasks, **hparams)`. One module per method family."""
from perception_mtl.registry import Registry

BALANCERS: Registry = Registry("balancer")

from perception_mtl.balancing import static  # noqa: E402,F401  (registration)
