"""Cityscapes label spaces, derived from the official `cityscapesscripts.helpers.labels` table.

- 19 train ids (255 = ignore), as the official benchmark;
- 7 categories (flat, construction, object, nature, sky, human, vehicle) used by the
  MTL literature (MTAN, LibMTL): the category of each evaluated class, 255 otherwise;
- 8 detection classes: the instance classes that have a train id.
"""
from __future__ import annotations

import numpy as np
from cityscapesscripts.helpers.labels import labels as CS_LABELS

IGNORE = 255

_EVALUATED = [lab for lab in CS_LABELS if 0 <= lab.id < 256 and lab.trainId not in (255, -1)]
_EVALUATED.sort(key=lambda lab: lab.trainId)

SEG_CLASSES: dict[int, list[str]] = {
    19: [lab.name for lab in _EVALUATED],
    7: ["flat", "construction", "object", "nature", "sky", "human", "vehicle"],
}
DET_CLASSES: list[str] = [lab.name for lab in _EVALUATED if lab.hasInstances]


def _lut(mapping: dict[int, int], fill: int) -> np.ndarray:
    lut = np.full(256, fill, np.int64)
    for key, value in mapping.items():
        lut[key] = value
    return lut


# label id -> class index of each label space (numpy lookup tables of length 256)
SEG_LUT: dict[int, np.ndarray] = {
    19: _lut({lab.id: lab.trainId for lab in _EVALUATED}, IGNORE),
    7: _lut({lab.id: lab.categoryId - 1 for lab in _EVALUATED}, IGNORE),
}
# train id -> class index of each label space, for label maps stored in train ids (BDD100K's sem_seg)
TRAIN_ID_LUT: dict[int, np.ndarray] = {
    19: _lut({lab.trainId: lab.trainId for lab in _EVALUATED}, IGNORE),
    7: _lut({lab.trainId: lab.categoryId - 1 for lab in _EVALUATED}, IGNORE),
}
DET_LUT: np.ndarray = _lut({lab.id: DET_CLASSES.index(lab.name) for lab in _EVALUATED if lab.hasInstances}, -1)

# class index -> Cityscapes label id, for exporting predictions the official tools read
TRAIN_ID_TO_LABEL_ID: np.ndarray = np.array([lab.id for lab in _EVALUATED], np.uint8)
DET_CLASS_TO_LABEL_ID: list[int] = [lab.id for lab in _EVALUATED if lab.hasInstances]


def detection_index(defaults: dict[str, str | None], overrides: dict[str, str | None], what: str,
                    note: str = "", classes: list[str] = DET_CLASSES) -> dict[str, int | None]:
    """A dataset's class name -> index in `classes` (None: ignored): its `defaults` updated by
    `data.class_map` (`overrides`); `what` names the dataset's classes in the error messages."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise ValueError(f"data.class_map names {sorted(unknown)}, not {what}; valid: {list(defaults)}{note}")
    index = {}
    for name, target in {**defaults, **overrides}.items():
        if target is not None and target not in classes:
            raise ValueError(f"data.class_map.{name}={target!r} is not a detection class; choose one of "
                             f"{classes} or null (ignore)")
        index[name] = None if target is None else classes.index(target)
    return index
