"""Typed configuration: dataclass schema and OmegaConf merge (defaults <- file <- key=value).

Every key a user may set is declared here, except a task's own keys (`task.<name>.*`): a task
declares them as a dataclass (`Task.Config`), which registering it publishes to `TASK_CONFIGS`,
and the schema (`structured`, `schema`) has one section per published task. `merge_config` rejects
unknown keys and values of the wrong type, with a message that lists what is valid. A leaf of the
package: the checks that need the registries (tasks, datasets, balancers, ...) or timm are
`engine/builders.py`'s `check`, and `engine.builders.load_config` is `merge_config` followed by them
(importing it registers every task): load configs through it.
"""
from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field, is_dataclass, make_dataclass
from pathlib import Path
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from perception_mtl.core.config_hints import schema_type, unknown_key, wrong_type
from perception_mtl.core.errors import ConfigError


@dataclass
class MixEntry:
    """One dataset of a `data.mix` training set; unset fields take `data.*`'s values."""
    dataset: str = "cityscapes"
    root: str = "???"
    tasks: list[str] = field(default_factory=list)  # empty: every task of the run that the dataset has
    weight: float = 1.0  # sampling weight of the dataset (per dataset, not per frame)
    name: Optional[str] = None  # label in logs and metric keys; default: the dataset name
    class_map: dict[str, Optional[str]] = field(default_factory=dict)


@dataclass
class DataConfig:
    dataset: str = "cityscapes"  # a registered loader (perception_mtl/data/__init__.py): cityscapes, kitti, bdd100k
    root: str = "datasets/generated/world"
    size: list[int] = field(default_factory=lambda: [128, 256])  # training H, W
    seg_classes: int = 19
    min_box_size: float = 2.0
    hflip: float = 0.5
    color_jitter: float = 0.0
    workers: int = 1
    train_fraction: float = 1.0  # train on this fraction of the frames (a fixed subset, the same for every seed)
    train_limit: Optional[int] = None  # use only the first N frames (quick runs, tests)
    val_limit: Optional[int] = None
    drop_labels: dict[str, float] = field(default_factory=dict)  # task -> fraction of frames whose labels are removed
    class_map: dict[str, Optional[str]] = field(default_factory=dict)  # dataset class -> detection class (null: ignore)
    det_classes: Optional[str] = None  # "bdd100k" (its 10) | "cityscapes" (8); None: the datasets' own (data/det_classes.py)
    on_bad_label: str = "error"  # "error": stop naming the file and line; "skip": skip the label or frame and count it
    polygon_boxes: bool = False  # Cityscapes: boxes from *_gtFine_polygons.json (official toolkit) not instanceIds
    depth_crop: Optional[str] = None  # KITTI evaluation crop: None | "garg" | "eigen"
    mix: list[MixEntry] = field(default_factory=list)  # several datasets in one training set (see docs/DATASETS.md)


@dataclass
class SoftConfig:
    beta: float = 1e-3  # weight of the coupling penalty
    penalty: str = "params"  # "params": ||theta_i - theta_j||^2; "features": L2 between backbone features
    strides: list[int] = field(default_factory=lambda: [32])  # feature strides of the "features" penalty


@dataclass
class ModelConfig:
    backbone: str = "resnet18"
    out_indices: Optional[list[int]] = None  # None: the feature levels at strides 4..32
    pretrained: bool = False  # timm's hub (needs a network)
    pretrained_path: Optional[str] = None  # a local timm checkpoint
    weights: Optional[str] = None  # "imagenet": the weights a registry package installs (models/weights.py)
    channels_last: bool = True  # NHWC memory format for the convolutions (faster on CPU and GPU)
    freeze_at: int = 0  # freeze the stem and stages up to this timm feature level (detectron2's freeze_at)
    neck_channels: int = 64
    branch: str = "neck"  # "neck": heads share one FPN; "backbone": one FPN per task
    head_channels: int = 64
    sharing: str = "hard"  # "hard" | "soft" (per-task networks, L2 coupling) | "cross_stitch"
    soft: SoftConfig = field(default_factory=SoftConfig)
    cross_stitch_init: float = 0.9  # diagonal of the cross-stitch units at step 0 (1.0: no mixing)


@dataclass
class TasksConfig:
    """`task.<name>`: one section per task that declares keys (`Task.Config`); `structured` adds
    them from TASK_CONFIGS, so the class itself has none."""


# task -> the dataclass of its keys; tasks/registry.py publishes a task's `Config` when it registers
TASK_CONFIGS: dict[str, type] = {}


def publish_task_config(task: str, keys: type) -> None:
    """Make `keys` (a dataclass) the schema of `task.<task>`."""
    if TASK_CONFIGS.setdefault(task, keys) is not keys:
        raise ValueError(f"task '{task}' already has the config section {TASK_CONFIGS[task].__qualname__}")


@dataclass
class BalancerConfig:
    name: str = "static"
    # the method's hyperparameters; configs/balancer/<name>.yaml holds their defaults
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class OptimConfig:
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    min_lr_ratio: float = 0.05
    clip_grad: float = 10.0
    backbone_lr_mult: float = 1.0  # the backbone's learning rate is optim.lr times this


@dataclass
class EarlyStoppingConfig:
    patience: int = 0  # evaluations without improvement before a task stops; 0: off
    metrics: dict[str, str] = field(default_factory=dict)  # task -> metric watched (default: its first)


@dataclass
class TrainConfig:
    steps: int = 1200
    batch_size: int = 8
    eval_every: int = 400
    log_every: int = 20
    checkpoint_every: int = 200
    seed: int = 0
    amp: bool = False  # bf16 autocast (on the CPU or the GPU)
    device: str = "auto"  # auto (this process's GPU if CUDA is available, else CPU) | cpu | cuda | cuda:N
    nonfinite: str = "stop"  # "stop" or "skip" a step whose loss is NaN/Inf
    best_metric: Optional[str] = None  # "<task>/<metric>" that picks best.pt; None: the first main task's primary
    threads: Optional[int] = None
    schedule: str = "joint"  # tasks per step: "joint" | "round_robin" | "loss_proportional"
    early_stopping: EarlyStoppingConfig = field(default_factory=EarlyStoppingConfig)
    affinity_every: int = 0  # >0: TAG lookahead affinity every N steps (T extra backward + forward passes)
    loss_scale: dict[str, float] = field(default_factory=dict)  # task -> factor on its loss before the balancer


@dataclass
class WandbConfig:
    mode: Optional[str] = None  # online | offline | disabled; None: online if an API key is set
    project: str = "perception_mtl"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: list[str] = field(default_factory=list)
    images: int = 4


@dataclass
class Config:
    tasks: list[str] = field(default_factory=list)  # registered task names; configs/default.yaml names three
    aux_tasks: list[str] = field(default_factory=list)  # of `tasks`: trained and logged, never in delta-m
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TasksConfig = field(default_factory=TasksConfig)
    balancer: BalancerConfig = field(default_factory=BalancerConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)
    output_dir: str = "runs/default"
    resume: bool = False


DEFAULTS = Path(__file__).resolve().parents[2] / "configs" / "default.yaml"


def structured() -> DictConfig:
    """The schema as a config at its defaults, with a `task.<name>` section per published task
    (each typed by its dataclass, so an unknown key or a wrong type there is refused too)."""
    cfg = OmegaConf.structured(Config)
    with open_dict(cfg.task):
        for task, keys in sorted(TASK_CONFIGS.items()):
            cfg.task[task] = OmegaConf.structured(keys)
    return cfg


def schema() -> type:
    """The schema as one dataclass type, the published task sections in `task` (for the error
    messages, which list valid keys and name declared types; configs are typed by `structured`)."""
    sections = make_dataclass("TasksConfig",
                              [(t, k, field(default_factory=k)) for t, k in sorted(TASK_CONFIGS.items())])
    return make_dataclass("Config", [("task", sections, field(default_factory=sections))], bases=(Config,))


def check_choice(key: str, value: Any, valid: list) -> None:
    """A ConfigError naming `key`, `value` and the valid values (and the closest one) unless
    `value` is one of `valid`."""
    if value not in valid:
        close = difflib.get_close_matches(str(value), [str(v) for v in valid], n=1, cutoff=0.8)
        raise ConfigError(f"{key}={value!r} is not valid{f' (did you mean {close[0]}?)' if close else ''}; "
                          f"choose from {valid}")


def _valid_keys(node: Any, prefix: str = "") -> list[str]:
    if not isinstance(node, DictConfig):
        return [prefix]
    keys = []
    for key in node:
        keys += _valid_keys(node[key], f"{prefix}.{key}" if prefix else str(key))
    return keys


def merge_config(file: str | Path | None = None, overrides: list[str] | None = None,
                 defaults: str | Path | None = DEFAULTS, base: Any = None) -> DictConfig:
    """Merge the schema <- `base` (e.g. a checkpoint's config) <- `defaults` <-
    configs/balancer/<name>.yaml (next to `defaults`) <- `file` <- `overrides` (key=value); only
    the schema's types are checked (`engine.builders.load_config` adds the other checks)."""
    sources: list[tuple[str, Any]] = [("saved config", base)] if base is not None else []
    if defaults is not None:
        if not Path(defaults).exists():  # never skipped silently: every run would lose its defaults
            raise ConfigError(f"the defaults file {defaults} is missing: perception_mtl reads configs/ from its "
                              "clone, so install it with `pip install -e .` inside a clone of the repository")
        sources.append((str(defaults), _load_yaml(defaults)))
    if file is not None:
        if not Path(file).exists():
            raise ConfigError(f"config file {file} does not exist")
        sources.append((str(file), _load_yaml(file)))
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"override '{item}' is not key=value")
        try:  # one source per override, so that an error names it
            sources.append((f"override '{item}'", OmegaConf.from_dotlist([item])))
        except Exception as err:  # yaml's parser errors on the value, OmegaConf's grammar errors on the key
            raise ConfigError(f"override '{item}' cannot be parsed ({type(err).__name__}: "
                              f"{str(err).splitlines()[0]}); write key=value, e.g. train.steps=100 or "
                              "tasks=[det,seg], and quote values with special characters") from err
    cfg = _merge(sources)
    if defaults is not None:
        method = Path(defaults).parent / "balancer" / f"{cfg.balancer.name}.yaml"
        if method.exists():
            at = len(sources) - len(overrides or []) - (file is not None)
            cfg = _merge(sources[:at] + [(str(method), OmegaConf.load(method))] + sources[at:])
    return cfg


def _load_yaml(path: str | Path) -> DictConfig:
    """A YAML mapping from `path`, or a ConfigError saying what is wrong with the file."""
    try:
        loaded = OmegaConf.load(path)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read config file {path}: {err}") from err
    except Exception as err:  # yaml's parser and scanner errors, OmegaConf's on odd keys
        raise ConfigError(f"config file {path} is not valid YAML: {err}") from err
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"config file {path} must be a mapping of keys (e.g. 'train: {{steps: 100}}'), "
                          f"got a {type(loaded).__name__}")
    return loaded


def _merge(sources: list[tuple[str, Any]]) -> DictConfig:
    cfg = structured()
    for name, source in sources:
        try:
            cfg = OmegaConf.merge(cfg, source)
        except ConfigKeyError as err:
            raise ConfigError(f"{name}: {unknown_key(schema(), err.full_key)}") from err
        except ValidationError as err:  # a value of the wrong type: name the key, the value, the type
            key = err.full_key or _culprit(source)
            value = OmegaConf.select(source, re.sub(r"\[\d+\]$", "", key), throw_on_missing=False)
            value = OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
            raise ConfigError(f"{name}: {wrong_type(schema(), key, value, str(err.msg).splitlines()[0])}") from err
        except OmegaConfBaseException as err:
            raise ConfigError(f"{name}: bad value for '{getattr(err, 'full_key', '?')}': {err.msg}") from err
        except (TypeError, ValueError) as err:  # e.g. a mapping where the schema has a list
            raise ConfigError(f"{name}: a value has the wrong shape ({err}); see the key's type in "
                              "perception_mtl/core/config.py (task.<name>.*: the task's Config)") from err
    return cfg


def _culprit(source: Any) -> str:
    """The key a ValidationError that names none is about: OmegaConf leaves it out for a value
    where the schema has a section (`task.det=3`), so the first such key of `source`, else its
    first key."""
    keys = [k for k in _valid_keys(source) if k] if isinstance(source, DictConfig) else []
    sections = [k for k in keys if is_dataclass(schema_type(schema(), k))]
    return (sections or keys or ["?"])[0]
