"""Task registry: `TASKS.get(name)(cfg)`. Each task lives in its own module."""
from perception_mtl.registry import Registry

TASKS: Registry = Registry("task")

from perception_mtl.tasks import det, depth, drivable, edges, noise, scene, seg  # noqa: E402,F401  (registration)
