"""segmentation-models-pytorch decoders (`task.seg.decoder`, `task.depth.decoder`) and losses
(`task.seg.loss`): shapes on two timm backbones, gradient flow, agreement with smp, ignore label,
learning on a fixed batch, and errors for unknown names."""
from __future__ import annotations

import pytest
import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F

from perception_mtl.core.config import ConfigError
from perception_mtl.data.labels import IGNORE
from perception_mtl.engine.builders import build_model, load_config
from perception_mtl.models.backbone import Backbone
from perception_mtl.models.heads.decoders import DECODERS, SMP_DECODERS, SmpDecoderHead, build_dense_head
from perception_mtl.tasks import TASKS
from perception_mtl.tasks.seg_losses import SEG_LOSSES

H, W, K = 32, 64, 19
BACKBONES = ("resnet18", "tf_efficientnet_lite0")
SMP_LOSSES = {
    "dice": lambda: smp.losses.DiceLoss(mode="multiclass", ignore_index=IGNORE),
    "lovasz": lambda: smp.losses.LovaszLoss(mode="multiclass", ignore_index=IGNORE),
    "focal": lambda: smp.losses.FocalLoss(mode="multiclass", ignore_index=IGNORE),
    "ce": lambda: torch.nn.CrossEntropyLoss(ignore_index=IGNORE),
}


def config(*extra: str, backbone: str = "test_resnet"):
    return load_config(None, [f"model.backbone={backbone}", "model.weights=null", "model.channels_last=false",
                              "tasks=[seg,depth]", f"data.size=[{H},{W}]", *extra], defaults=None)


def build(cfg):
    tasks = {t: TASKS.get(t)(cfg) for t in cfg.tasks}
    return build_model(cfg, tasks), tasks


def seg_batch(n: int = 2) -> dict:
    """Images of 8x8 blocks whose red channel decides the class (0, 1 or 2), a border of ignored pixels."""
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 3, H // 8, W // 8, generator=g).repeat_interleave(8, 2).repeat_interleave(8, 3)
    semantic = (images[:, 0] * 3).long().clamp(max=2)
    semantic[:, :4] = IGNORE
    return {"image": images, "semantic": semantic, "has": {"seg": torch.ones(n, dtype=torch.bool)}}


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_shape_and_gradient(backbone: str, decoder: str):
    cfg = config(f"task.seg.decoder={decoder}", f"task.depth.decoder={decoder}", backbone=backbone)
    model, _ = build(cfg)
    out = model(torch.rand(2, 3, H, W))
    assert out["seg"].shape == (2, K, H, W) and out["depth"].shape == (2, 1, H, W)
    if decoder != "light":
        assert isinstance(model.heads["seg"], SmpDecoderHead)
    model.zero_grad()
    out["seg"].square().mean().backward()  # seg alone: its gradient must cross the neck into the backbone
    first = next(p for p in model.backbone.parameters() if p.requires_grad)
    assert first.grad is not None and first.grad.abs().sum() > 0


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("decoder", tuple(SMP_DECODERS))
def test_decoder_on_raw_timm_features(backbone: str, decoder: str):
    """The heads also take timm's levels directly (a different channel count per stride)."""
    body = Backbone(backbone)
    assert len(set(body.channels)) > 1
    head = SmpDecoderHead(decoder, body.channels, body.strides, 3, 32)
    assert head(body(torch.rand(2, 3, H, W))).shape == (2, 3, H, W)  # 2: BatchNorm after ASPP's 1x1 pooling


@pytest.mark.parametrize("term", tuple(SEG_LOSSES))
def test_loss_matches_smp_and_ignores_255(term: str):
    task = TASKS.get("seg")(config(f"task.seg.loss={term}"))
    batch = seg_batch()
    batch["has"]["seg"] = torch.tensor([True, False])  # the unlabelled sample counts for nothing
    logits = torch.randn(2, K, H, W, requires_grad=True)
    loss = task.loss(None, logits, batch)
    assert set(loss) == {term}
    expected = SMP_LOSSES[term]()(logits[:1], batch["semantic"][:1])
    torch.testing.assert_close(loss[term], expected)
    loss[term].backward()
    ignored = (batch["semantic"] == IGNORE).unsqueeze(1).expand_as(logits)
    assert logits.grad[ignored].abs().max() == 0 and logits.grad[0][~ignored[0]].abs().sum() > 0
    assert logits.grad[1].abs().max() == 0
    changed = logits.detach().clone()
    changed[ignored] = 100.0  # anything at an ignored pixel leaves the loss as it was
    torch.testing.assert_close(task.loss(None, changed, batch)[term], loss[term].detach())


def test_combined_loss_logs_each_term():
    task = TASKS.get("seg")(config("task.seg.loss=ce+dice"))
    batch, logits = seg_batch(), torch.randn(2, K, H, W)
    loss = task.loss(None, logits, batch)
    assert set(loss) == {"ce", "dice"}
    torch.testing.assert_close(loss["dice"], SMP_LOSSES["dice"]()(logits, batch["semantic"]))


def fit(cfg, steps: int = 12) -> tuple[float, float]:
    """Mean seg loss over the first and over the last 3 of `steps` Adam steps of the seg head alone
    on one fixed batch, its pyramid the image average-pooled to strides 4..32 (the backbone is
    tested above)."""
    torch.manual_seed(0)
    task, batch = TASKS.get("seg")(cfg), seg_batch()
    feats = {s: F.avg_pool2d(batch["image"], s) for s in (4, 8, 16, 32)}
    head = task.build_head(3, [4, 8, 16, 32])
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    losses = []
    for _ in range(steps):
        loss = sum(task.loss(head, head(feats), batch).values())
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return sum(losses[:3]) / 3, sum(losses[-3:]) / 3  # FPN's dropout makes single steps noisy


@pytest.mark.parametrize("term", tuple(SEG_LOSSES))
def test_each_loss_decreases(term: str):
    first, last = fit(config("tasks=[seg]", "data.seg_classes=7", "task.seg.decoder=deeplabv3plus",
                             f"task.seg.loss={term}"))
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("decoder", DECODERS)
def test_each_decoder_learns(decoder: str):
    first, last = fit(config("tasks=[seg]", "data.seg_classes=7", f"task.seg.decoder={decoder}"))
    assert last < 0.8 * first, (first, last)


@pytest.mark.parametrize("override, valid", [
    ("task.seg.decoder=segformer", "['light', 'fpn', 'deeplabv3plus', 'unet']"),
    ("task.depth.decoder=fpnn", "['light', 'fpn', 'deeplabv3plus', 'unet']"),
    ("task.seg.loss=ce+tversky", "['ce', 'dice', 'lovasz', 'focal']"),
])
def test_unknown_names_list_the_valid_ones(override: str, valid: str):
    with pytest.raises(ConfigError) as err:
        config(override)
    assert override.split("=")[0] in str(err.value) and valid in str(err.value)


def test_builder_errors_name_the_culprit():
    with pytest.raises(ValueError, match=r"'pspnet'; choose from \['light', 'fpn', 'deeplabv3plus', 'unet'\]"):
        build_dense_head("pspnet", 64, [4, 8, 16, 32], K, 64)
    with pytest.raises(ValueError, match=r"'unet' needs feature strides \[4, 8, 16, 32\].*missing \[32\]"):
        build_dense_head("unet", 64, [4, 8, 16], K, 64)
    with pytest.raises(ValueError, match="repeats"):
        config("task.seg.loss=dice+dice")
    with pytest.raises(ConfigError, match=r"task.depth.decoder=deeplabv3plus needs train.batch_size >= 2"):
        config("task.depth.decoder=deeplabv3plus", "train.batch_size=1")
