"""Dataset registry (registry.py): `DATASETS.get(name)(root, split, tasks, data, train)` -> a torch Dataset.

A loader is a function registered under its name in its own module (cityscapes.py, kitti.py,
bdd100k.py). It returns a Dataset whose items follow the sample contract of cityscapes.py's
docstring and which also has `tasks_of(index) -> set[str]`: the tasks frame `index` carries
labels for, known without decoding it (label counts, partial labels).

  root:  the dataset's folder; split: "train" | "val"; tasks: the tasks to load;
  data:  the run's `data` config (seg_classes, size, hflip, color_jitter, min_box_size,
         class_map, on_bad_label, polygon_boxes, depth_crop);
  train: True for the training set (resize and augment to data.size), False for evaluation
         (labels at their own resolution).
"""
from perception_mtl.data import bdd100k, cityscapes, kitti  # noqa: F401  (registration)
from perception_mtl.data.registry import DATASETS  # noqa: F401
