"""Detection class sets (`data.det_classes`): which classes the det head predicts and the metric counts.

- "cityscapes": the 8 Cityscapes instance classes (labels.DET_CLASSES); every loader labels them,
  so it is the set of a mix of datasets (BDD100K drops traffic lights and signs under it);
- "bdd100k": BDD100K's 10 official detection classes, in the order of its evaluation config
  (bdd100k/configs/det.toml): the 8 above (person is "pedestrian") then traffic light, traffic sign.

A run has one set. Unset (None), it is the set of the datasets that carry det: a loader's first
entry in LOADER_SETS (BDD100K: "bdd100k"), "cityscapes" for a loader not listed there.
"""
from __future__ import annotations

from omegaconf import DictConfig

from perception_mtl.data.labels import DET_CLASS_TO_LABEL_ID, DET_CLASSES
from perception_mtl.core.errors import ConfigError

CLASS_SETS: dict[str, list[str]] = {
    "cityscapes": DET_CLASSES,
    "bdd100k": ["pedestrian", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
                "traffic light", "traffic sign"],
}
# category ids of the COCO files we export: Cityscapes label ids; BDD100K's COCO conversion numbers
# its 10 classes 1..10 in the order above (bdd100k/label/to_coco.py)
COCO_IDS: dict[str, list[int]] = {"cityscapes": DET_CLASS_TO_LABEL_ID, "bdd100k": list(range(1, 11))}
# the sets a loader can label, its default first; a loader not listed labels "cityscapes" only
LOADER_SETS: dict[str, tuple[str, ...]] = {"bdd100k": ("bdd100k", "cityscapes")}


def loader_sets(dataset: str) -> tuple[str, ...]:
    """The class sets loader `dataset` can label, its default first."""
    return LOADER_SETS.get(dataset, ("cityscapes",))


def class_set(cfg: DictConfig) -> str:
    """The run's class set: `data.det_classes`, else the default of the datasets that carry det.
    A ConfigError when they default to different sets or one cannot label the set asked for."""
    chosen = cfg.data.det_classes
    if chosen is not None and chosen not in CLASS_SETS:
        raise ConfigError(f"data.det_classes={chosen!r} is not valid; choose from {[None, *CLASS_SETS]}")
    if cfg.data.mix:
        datasets = [e.dataset for e in cfg.data.mix if "det" in (e.tasks or cfg.tasks)]
    else:
        datasets = [cfg.data.dataset]
    if "det" not in cfg.tasks or not datasets:  # no detection: the set is not used
        return chosen or loader_sets(cfg.data.dataset)[0]
    if chosen is None:
        defaults = {d: loader_sets(d)[0] for d in datasets}
        if len(set(defaults.values())) > 1:
            raise ConfigError(f"data.mix trains det on datasets whose detection classes differ ({defaults}); a mix has "
                              f"one class set: set data.det_classes=cityscapes (the 8 classes every loader labels)")
        return defaults[datasets[0]]
    unable = sorted({d for d in datasets if chosen not in loader_sets(d)})
    if unable:
        sets = "; ".join(f"{d} has {list(loader_sets(d))}" for d in unable)
        raise ConfigError(f"data.det_classes={chosen} ({len(CLASS_SETS[chosen])} classes): not every dataset with det "
                          f"labels has these classes ({sets}); use data.det_classes=cityscapes")
    return chosen


def det_classes(cfg: DictConfig) -> list[str]:
    """The names of the run's detection classes, in class-index order."""
    return CLASS_SETS[class_set(cfg)]
