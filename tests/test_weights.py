"""Packaged ImageNet weights (offline), freezing and the backbone learning-rate multiplier."""
from __future__ import annotations

from pathlib import Path

import matplotlib
import numpy as np
import pytest
import timm
import torch
from PIL import Image

from perception_mtl.core.config import ConfigError
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.trainer import Trainer
from perception_mtl.models.backbone import Backbone
from perception_mtl.models.weights import PACKAGED, WeightsError, imagenet_state_dict, load_imagenet
from tests.helpers import tiny_config

MILITARY_UNIFORM = 652  # ImageNet class of matplotlib's bundled photo of Grace Hopper


def _grace_hopper(size: int = 224) -> torch.Tensor:
    """matplotlib's sample photo as (1, 3, size, size) in [-1, 1] (timm's mean/std for tf_efficientnet_lite*)."""
    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    pixels = np.array(Image.open(path).convert("RGB").resize((size, size), Image.BILINEAR), dtype=np.float32)
    return (torch.from_numpy(pixels).permute(2, 0, 1)[None] / 255 - 0.5) / 0.5


@pytest.mark.parametrize("name", sorted(PACKAGED))
def test_packaged_weights_classify_a_known_photo(name):
    model = timm.create_model(name).eval()
    load_imagenet(model, name)
    assert model.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    with torch.no_grad():
        probs = model(_grace_hopper()).softmax(-1)[0]
    assert int(probs.argmax()) == MILITARY_UNIFORM
    assert float(probs.max()) > 0.3


def test_random_weights_do_not_pass_the_photo_check():
    torch.manual_seed(0)
    model = timm.create_model("tf_efficientnet_lite0").eval()
    with torch.no_grad():
        probs = model(_grace_hopper()).softmax(-1)[0]
    assert float(probs.max()) < 0.3


def test_backbone_features_start_from_the_packaged_tensors():
    backbone = Backbone("tf_efficientnet_lite0", weights="imagenet")
    weights = imagenet_state_dict("tf_efficientnet_lite0")
    for key, value in backbone.body.state_dict().items():
        assert torch.equal(value, weights[key]), key
    assert backbone.mean.flatten().tolist() == [0.5, 0.5, 0.5]


def test_a_backbone_without_packaged_weights_lists_those_with():
    with pytest.raises(WeightsError, match="tf_efficientnet_lite0"):
        Backbone("resnet18", weights="imagenet")
    with pytest.raises(ConfigError, match="tf_efficientnet_lite1"):
        load_config(None, ["tasks=[det]", "model.backbone=resnet18", "model.weights=imagenet"], defaults=None)
    with pytest.raises(ConfigError, match="model.weights"):
        load_config(None, ["tasks=[det]", "model.weights=imagenet21k"], defaults=None)


def test_a_mismatched_checkpoint_is_named(monkeypatch, tmp_path):
    bad = tmp_path / "bad.pth"
    torch.save({"_conv_stem.weight": torch.zeros(1)}, bad)
    monkeypatch.setattr("perception_mtl.models.weights.checkpoint_file", lambda name: bad)
    with pytest.raises(WeightsError, match="bad.pth"):
        imagenet_state_dict("tf_efficientnet_lite0")


@pytest.mark.parametrize("name, freeze_at, frozen", [
    ("resnet18", 2, ["conv1", "bn1", "act1", "maxpool", "layer1"]),
    ("tf_efficientnet_lite0", 2, ["conv_stem", "bn1", "blocks.0", "blocks.1"]),
    ("convnext_atto", 1, ["stem_0", "stem_1", "stages_0"]),
])
def test_freeze_at_freezes_the_stem_and_early_stages(name, freeze_at, frozen):
    backbone = Backbone(name, freeze_at=freeze_at)
    assert backbone.frozen == frozen
    first = backbone.body.get_submodule(frozen[-1])
    later = [p for n, p in backbone.body.named_parameters() if not any(n.startswith(f + ".") for f in frozen)]
    assert all(not p.requires_grad for p in first.parameters())
    assert later and all(p.requires_grad for p in later)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in first.modules())
    stats = {k: v.clone() for k, v in first.state_dict().items()}
    backbone.train()(torch.rand(2, 3, 64, 64))  # frozen BatchNorm keeps its statistics in train mode
    assert all(torch.equal(stats[k], v) for k, v in first.state_dict().items())
    with pytest.raises(ValueError, match="freeze_at"):
        Backbone(name, freeze_at=9)


def test_backbone_lr_multiplier_and_frozen_parameters_in_the_optimizer(tiny_world, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "optim.backbone_lr_mult=0.1", "model.freeze_at=1"))
    backbone = {id(p) for p in trainer.model.backbone.parameters() if p.requires_grad}
    groups = trainer.optimizer.param_groups
    in_optimizer = {id(p) for g in groups for p in g["params"]}
    assert all(id(p) not in in_optimizer for p in trainer.model.parameters() if not p.requires_grad)
    (bb,) = [g for g in groups if {id(p) for p in g["params"]} == backbone]
    assert bb["initial_lr"] == pytest.approx(0.1 * trainer.cfg.optim.lr)
    assert all(g["initial_lr"] == pytest.approx(trainer.cfg.optim.lr) for g in groups if g is not bb)
