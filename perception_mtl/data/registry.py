"""The dataset registry (the package's docstring gives a loader's contract)."""
from perception_mtl.core.registry import Registry

DATASETS: Registry = Registry("dataset")
