"""The multi-task model over several timm backbones and both branch points."""
from __future__ import annotations

import pytest
import torch

from perception_mtl.data.labels import DET_CLASSES
from perception_mtl.engine.builders import build_model, build_tasks, load_config
from perception_mtl.models.backbone import Backbone


@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet", "test_convnext", "resnet18",
                                      "efficientnet_b0", "convnext_atto"])
@pytest.mark.parametrize("branch", ["neck", "backbone"])
def test_outputs_have_the_documented_shapes(backbone, branch):
    cfg = load_config(None, [f"model.backbone={backbone}", f"model.branch={branch}",
                             "tasks=[det,seg,depth,scene]"], defaults=None)
    model = build_model(cfg, build_tasks(cfg)).eval()
    images = torch.rand(2, 3, 64, 128)
    with torch.no_grad():
        out = model(images)
    assert out["seg"].shape == (2, 19, 64, 128)
    assert out["depth"].shape == (2, 1, 64, 128)
    assert out["scene"].shape == (2, 6)
    anchors = sum((64 // s) * (128 // s) for s in cfg.task.det.strides)
    assert out["det"]["cls_logits"].shape == (2, anchors, len(DET_CLASSES))
    shared = {id(p) for p in model.shared_parameters()}
    assert shared and all(id(p) not in shared for p in model.heads.parameters())


def test_pretrained_offline_without_file_says_what_to_do(monkeypatch):
    import timm

    def offline(*args, **kwargs):
        if kwargs.get("pretrained"):
            raise OSError("We couldn't connect to the hub")
        return original(*args, **kwargs)

    original = timm.create_model
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(RuntimeError, match="pretrained_path"):
        Backbone("resnet18", pretrained=True)


def test_pretrained_path_loads_a_local_file(tmp_path):
    source = Backbone("test_resnet")
    path = tmp_path / "weights.pth"
    torch.save(source.body.state_dict(), path)
    loaded = Backbone("test_resnet", pretrained_path=str(path))
    for key, value in source.body.state_dict().items():
        assert torch.equal(value, loaded.body.state_dict()[key]), key
