"""The task interface: a head builder, a loss, post-processing and a metric, bundled by name,
and every per-task fact the rest of the code reads (targets, metric directions, primary metric,
loss form, extra label files, its config keys and their checks, its drawing, export and picture
hooks). A new task is one file."""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch
from matplotlib.axes import Axes
from omegaconf import DictConfig
from torch import nn
from torchmetrics import Metric

from perception_mtl.data.targets import LabelFiles, Target
from perception_mtl.core.errors import ConfigError

LOSS_FORMS = ("classification", "regression")


class Task(ABC):
    """One prediction task. `batch["has"][name]` (B,) bool marks samples with labels: the others
    contribute nothing to the loss or the metric. Subclasses set the class attributes below
    (checked when registered) and implement the abstract methods."""

    name: str = ""
    directions: dict[str, bool] = {}  # metric -> higher is better
    primary: str = ""  # the metric that stands for the task (transfer report, dashboards)
    key_metrics: tuple[str, ...] = ()  # compared across methods on dashboards; () means (primary,)
    loss_form: str = ""  # "classification" | "regression": its factor in uncertainty weighting
    targets: dict[str, Target] = {}  # sample key -> how it is batched (data/targets.py)
    files: LabelFiles | None = None  # an extra Cityscapes-style label folder the loader reads
    reads: str | None = None  # the task whose labels a loader loads for this one (its targets derive from them)
    Config: ClassVar[type | None] = None  # dataclass of its keys `task.<name>.*` with defaults; None: no keys

    @classmethod
    def check_spec(cls) -> None:
        """Raise if a declared fact is missing or inconsistent (called at registration)."""
        if cls.primary not in cls.directions:
            raise ValueError(f"task '{cls.name}': primary metric '{cls.primary}' is not in directions "
                             f"{sorted(cls.directions)}")
        if cls.loss_form not in LOSS_FORMS:
            raise ValueError(f"task '{cls.name}': loss_form '{cls.loss_form}' must be one of {LOSS_FORMS}")
        for m in cls.key_metrics:
            if m not in cls.directions:
                raise ValueError(f"task '{cls.name}': key metric '{m}' is not in directions")
        if cls.Config is not None and not dataclasses.is_dataclass(cls.Config):
            raise ValueError(f"task '{cls.name}': Config must be a dataclass (its keys task.{cls.name}.*)")
        if cls.reads == cls.name:
            raise ValueError(f"task '{cls.name}' reads its own labels: leave `reads` None")

    @classmethod
    def check_config(cls, cfg: DictConfig) -> None:
        """Raise a ConfigError for a value of `task.<name>` that its type admits but the task cannot
        use: here the ranges its `Config` declares with `bounded`; a task with more checks (names,
        combinations with other keys) extends this. `engine.builders.check` calls it for every
        registered task (every config has every section), once interpolations resolve and numbers
        are finite."""
        if cls.Config is None:
            return
        section = cfg.task[cls.name]
        for key in dataclasses.fields(cls.Config):
            if "valid" in key.metadata:
                valid, words = key.metadata["valid"]
                value = section[key.name]
                if value is not None and not valid(value):
                    raise ConfigError(f"task.{cls.name}.{key.name}={value} must be {words}")

    @classmethod
    def dashboard_metrics(cls) -> tuple[str, ...]:
        return cls.key_metrics or (cls.primary,)

    def __init__(self, cfg: DictConfig):
        self.cfg = cfg

    @abstractmethod
    def build_head(self, channels: int, strides: list[int]) -> nn.Module:
        ...

    @abstractmethod
    def loss(self, head: nn.Module, output, batch: dict) -> dict[str, torch.Tensor]:
        """Loss components (scalars) over labelled samples; {} when the batch has none."""
        ...

    @abstractmethod
    def predict(self, head: nn.Module, output, images: torch.Tensor, out_size: tuple[int, int]):
        """Post-processed predictions for input `images`, at resolution `out_size` (H, W)."""
        ...

    @abstractmethod
    def metric(self) -> Metric:
        ...

    @abstractmethod
    def update(self, metric: Metric, predictions, batch: dict) -> None:
        """Add labelled samples' predictions to `metric`."""
        ...

    @abstractmethod
    def draw(self, ax: Axes, image: np.ndarray, prediction, min_score: float) -> None:
        """Draw one frame's prediction (as `predict` gives it for one sample, at the frame's size)
        on its own panel `ax`, over `image` (H, W, 3) uint8 or beside it, with a short title;
        `min_score`: the least confidence drawn, for a task whose outputs are scored."""
        ...

    def exporter(self, out: Path) -> "Exporter | None":
        """Writes predictions in the format outside evaluators read (`--save-predictions`);
        None for a task without one."""
        return None

    def truth(self, batch: dict, i: int):
        """Sample `i`'s ground truth in the form `predict` gives one sample, so that `draw` draws it
        beside the prediction; None when the sample has no labels of this task. By default the task's
        one target key; a task with several keys, none, or a derived target overrides this."""
        if not labelled(batch, self.name)[i]:
            return None
        (key,) = self.targets
        return batch[key][i]

    def error(self, ax: Axes, image: np.ndarray, prediction, truth) -> bool:
        """Draw where `prediction` departs from `truth` (as `truth` gives it) on `ax`; False, drawing
        nothing, for a task without an error picture."""
        return False

    def per_frame(self, metric: Metric) -> dict | None:
        """What `metric` saw, frame by frame, for a frame bootstrap of its value (JSON-ready);
        None for a task without one. Called after `metric.compute()`."""
        return None

    def overlay(self, prediction, batch: dict, i: int) -> dict:
        """W&B image fields drawn over sample `i`'s image ({"masks": ...} or {"boxes": ...},
        with ground truth where `batch` has it); {} for a task drawn as its own picture."""
        return {}

    def picture(self, prediction) -> np.ndarray | None:
        """One sample's prediction as an RGB picture (H, W, 3) uint8 for dashboards, when it is
        not drawn over the image (as masks and boxes are); None otherwise."""
        return None


def bounded(default: Any, valid: Callable[[Any], bool], words: str) -> Any:
    """A field of a task's `Config` whose value must pass `valid` (null passes); `words` says the
    range in the error, e.g. ">= 1". `Task.check_config` checks it."""
    return dataclasses.field(default=default, metadata={"valid": (valid, words)})


class Exporter(ABC):
    """Writes one task's predictions under an output folder."""

    @abstractmethod
    def add(self, batch: dict, i: int, frame: str, prediction) -> None:
        """Write sample `i`'s prediction (it carries the task's labels)."""

    def close(self) -> None:
        """Write whatever was gathered over all samples."""


class Exporters(Exporter):
    """Several exporters of one task as one (a task that writes its predictions in several formats)."""

    def __init__(self, *exporters: Exporter):
        self.exporters = exporters

    def add(self, batch: dict, i: int, frame: str, prediction) -> None:
        for exporter in self.exporters:
            exporter.add(batch, i, frame, prediction)

    def close(self) -> None:
        for exporter in self.exporters:
            exporter.close()


def labelled(batch: dict, task: str) -> torch.Tensor:
    """Bool mask (B,) of samples that carry labels for `task`; all False when no sample of the
    batch does (partial labels: collate lists only the tasks some sample carries)."""
    if task in batch["has"]:
        return batch["has"][task]
    return torch.zeros(batch["image"].shape[0], dtype=torch.bool)
