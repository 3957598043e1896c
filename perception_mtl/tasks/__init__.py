"""Task registry (registry.py): `TASKS.get(name)(cfg)`. Each task lives in its own module and
registers itself with `@TASKS.register(name)`; a new task is its file and its name in the import
below."""
from perception_mtl.tasks import centers, det, depth, drivable, edges, noise, normals, scene, seg  # noqa: F401  (registration)
from perception_mtl.tasks.registry import TASKS  # noqa: F401
