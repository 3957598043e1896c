"""The FCOS head's box distances keep their gradient: a side pushed negative recovers (issue: detection
collapsed in some seeds because torchvision's ReLU left the top-side distance dead everywhere)."""
import torch
from torch import nn

from perception_mtl.models.heads.detection import DetectionHead, PositiveDistances


def _head() -> DetectionHead:
    torch.manual_seed(0)
    return DetectionHead(channels=32, strides=[8, 16], num_classes=3, num_convs=1)


def _loss(head: DetectionHead) -> torch.Tensor:
    images = torch.zeros(2, 3, 64, 128)
    feats = {8: torch.randn(2, 32, 8, 16), 16: torch.randn(2, 32, 4, 8)}
    targets = [{"boxes": torch.tensor([[10.0, 12.0, 50.0, 40.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[60.0, 20.0, 100.0, 60.0]]), "labels": torch.tensor([2])}]
    return head.loss(head(feats), images, targets)["bbox_regression"]


def _top_side_grad(head: DetectionHead) -> torch.Tensor:
    reg = head.fcos.head.regression_head.bbox_reg
    with torch.no_grad():
        reg.bias[1] = -5.0  # the top side's pre-activation, negative at every location (the collapsed state)
    _loss(head).backward()
    return reg.bias.grad[1]


def test_distances_are_positive_and_start_at_one_stride():
    head = _head()
    out = head({8: torch.randn(1, 32, 8, 16), 16: torch.randn(1, 32, 4, 8)})
    d = out["bbox_regression"]
    assert d.shape == (1, 8 * 16 + 4 * 8, 4)
    assert (d > 0).all()
    assert 0.5 < d.median() < 2.0  # exp of a near-zero initial conv: about one stride per side


def test_a_side_pushed_negative_still_gets_gradient():
    assert isinstance(_head().fcos.head.regression_head.bbox_reg, PositiveDistances)
    assert _top_side_grad(_head()).abs() > 1e-6


def test_torchvisions_relu_alone_leaves_that_side_dead():
    """The failure the exp output fixes, shown on torchvision's own conv."""
    head = _head()
    reg = head.fcos.head.regression_head
    plain = nn.Conv2d(32, 4, 3, padding=1)
    plain.load_state_dict(reg.bbox_reg.state_dict())
    reg.bbox_reg = plain
    assert _top_side_grad(head) == 0.0
