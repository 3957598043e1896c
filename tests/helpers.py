"""Small builders shared by tests: the tiny training config and toy models for balancers."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
from torch import nn

from perception_mtl.engine.builders import load_config
from perception_mtl.models.features import Features

def tool_main(name: str):
    """The `main` of tools/<name>.py, imported from its file (tools are scripts, not a package)."""
    path = Path(__file__).resolve().parents[1] / "tools" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"tool_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


TINY_TRAIN = [
    "tasks=[det,seg,depth]",
    "model.backbone=test_resnet", "model.weights=null", "data.size=[64,128]", "data.workers=0", "data.hflip=0.5",
    "train.batch_size=3", "train.log_every=1", "train.eval_every=1000", "train.checkpoint_every=1000",
    "optim.warmup_steps=2", "optim.lr=0.003", "wandb.mode=disabled", "task.det.topk_candidates=200",
]


def tiny_config(world: Path, out: Path, *extra: str):
    """A config for a few CPU steps on the tiny world with timm's `test_resnet`."""
    return load_config(None, TINY_TRAIN + [f"data.root={world}", f"output_dir={out}", *extra], defaults=None)


def backward(balancer, model: nn.Module) -> dict:
    """`balancer.backward` on one forward of a toy model: its losses and the features it returned."""
    features, losses = model.forward_losses()
    return balancer.backward(losses, features, model)


class SharedLinear(nn.Module):
    """A shared linear layer (then `activation`) read by one linear head per task of `y`; task t's
    loss is `scale * task_scale[t]` times the MSE of its head on x (N, inputs) against y[t] (N, 1).
    Exposes the model interface balancers use; the representation is the activated shared layer's
    output (N, hidden)."""

    def __init__(self, x: torch.Tensor, y: dict[str, torch.Tensor], hidden: int,
                 activation: nn.Module | None = None, task_scale: dict[str, float] | None = None):
        super().__init__()
        self.shared = nn.Linear(x.shape[1], hidden)
        self.heads = nn.ModuleDict({t: nn.Linear(hidden, 1) for t in y})
        self.activation = activation or nn.Identity()
        self.x, self.y = x, y
        self.scale = {t: (task_scale or {}).get(t, 1.0) for t in y}

    def forward_losses(self, scale: float = 1.0) -> tuple[Features, dict[str, torch.Tensor]]:
        """(the representation {0: (N, hidden)}, {task: loss})."""
        rep = self.activation(self.shared(self.x))
        losses = {t: scale * self.scale[t] * ((head(rep) - self.y[t]) ** 2).mean() for t, head in self.heads.items()}
        return Features({0: rep}, shared=True), losses

    def losses(self, scale: float = 1.0) -> dict[str, torch.Tensor]:
        return self.forward_losses(scale)[1]

    def shared_parameters(self):
        return self.shared.parameters()

    def last_shared_parameters(self):
        return self.shared.parameters()

    def task_parameters(self, task: str):
        return self.heads[task].parameters()


class TwoTaskLinear(SharedLinear):
    """16 -> 16 shared, tasks a and b; task b's loss is `scale` times larger. Targets carry noise
    (variance 0.5 for a and for b before scaling), so the losses settle at known floors."""

    def __init__(self, scale: float = 100.0, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        x = torch.randn(256, 16, generator=g)
        y = {t: x @ torch.randn(16, 1, generator=g) + 0.5 ** 0.5 * torch.randn(256, 1, generator=g) for t in "ab"}
        super().__init__(x, y, 16, task_scale={"b": scale})


class ThreeTasks(SharedLinear):
    """8 -> 12 shared with tanh, tasks a, b, c. Head b starts as a copy of head a and its target is
    -2 times a's, so their gradients conflict: the mean gradient opposes task a's (what makes
    UPGrad and DualProj project)."""

    def __init__(self):
        g = torch.Generator().manual_seed(1)
        x = torch.randn(64, 8, generator=g)
        w = torch.randn(8, 1, generator=g)
        super().__init__(x, {"a": x @ w, "b": -2 * x @ w, "c": torch.randn(64, 1, generator=g)}, 12, nn.Tanh())
        self.heads["b"].load_state_dict(self.heads["a"].state_dict())


class Probe(nn.Module):
    """Shared vector theta (D,) for gradients `grads` (T, D); the representation is theta itself and
    L_i = <g_i, theta> + c_i^2, so the per-task gradients on theta (and on the representation) are
    exactly g_i."""

    def __init__(self, grads: torch.Tensor):
        super().__init__()
        self.g = grads
        self.theta = nn.Parameter(torch.zeros(grads.shape[1]))
        self.c = nn.ParameterDict({str(i): nn.Parameter(torch.ones(())) for i in range(len(grads))})

    def forward_losses(self) -> tuple[Features, dict[str, torch.Tensor]]:
        """(the representation {0: theta (D,)}, {task: loss})."""
        rep = self.theta * 1.0
        return Features({0: rep}, shared=True), {str(i): g @ rep + self.c[str(i)] ** 2 for i, g in enumerate(self.g)}

    def losses(self) -> dict[str, torch.Tensor]:
        return self.forward_losses()[1]

    def shared_parameters(self):
        return iter([self.theta])

    def task_parameters(self, task: str):
        return iter([self.c[task]])
