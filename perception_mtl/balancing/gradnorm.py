"""GradNorm: Chen, Badrinarayanan, Lee & Rabinovich, "GradNorm: Gradient Normalization for
Adaptive Loss Balancing in Deep Multitask Networks", ICML 2018, Algorithm 1.

Weights w_i(0) = 1. Each step, with W the chosen shared layer:
  G_i = ||grad_W w_i L_i||,  L~_i = L_i / L_i(0),  r_i = L~_i / mean_j L~_j,
  L_grad = sum_i | G_i - mean_j(G_j) r_i^alpha |     (the target is held constant, eq. 2);
the network steps on sum_i w_i L_i with the current weights; then w takes a step on
grad_w L_grad with its own optimizer and is renormalised to sum_i w_i = T.

Since G_i = w_i ||grad_W L_i||, dL_grad/dw_i = sign(G_i - target_i) ||grad_W L_i|| exactly; we
use this closed form rather than a double backward (create_graph), which gives the same
gradient at no extra cost.

W: `space="parameter"` (default, registered as `gradnorm`) is the paper's choice, the weights of
the last shared layer (`model.last_shared_parameters()`). `space="representation"` (registered
as `gradnorm-rep`, a labelled variant) takes the output of the last shared layer instead (the
shared features the heads read), so the per-task norms cost one backward through each head and
the network's backward is still a single pass through the backbone.

Where well-known implementations depart from the paper, and what we do:
- LibMTL parametrises w = T softmax(logits) and updates the logits with the network's own
  optimizer and learning rate; we keep the paper's raw weights, renormalised after each update,
  with a separate optimizer (Adam, `lr`, 0.025 by default) as the paper's separate update implies.
- Several re-implementations differentiate through the mean G (not held constant) or skip the
  renormalisation; we do neither.
- L_i(0) is the loss of the first step the task is seen (the paper's t = 0). Weights are floored
  at `min_weight` before renormalisation so that none turns negative (the paper is silent).
"""
from __future__ import annotations

import torch
from torch import nn

from perception_mtl.core import distributed
from perception_mtl.balancing.base import Balancer, Losses
from perception_mtl.balancing.gradients import backward_through_shared, task_gradients
from perception_mtl.balancing.registry import BALANCERS, variants
from perception_mtl.models.features import Features


REPRESENTATION_NORMS = "norms on the shared features (representation space)"


@BALANCERS.register("gradnorm")
@variants(space={"representation": REPRESENTATION_NORMS})
class GradNorm(Balancer):
    spaces = ("parameter", "representation")

    def __init__(self, tasks: list[str], alpha: float = 1.5, lr: float = 0.025,
                 space: str = "parameter", min_weight: float = 1e-3):
        super().__init__(tasks)
        if space not in ("representation", "parameter"):
            raise ValueError(f"gradnorm space={space!r}; choose from ['parameter', 'representation']")
        self.alpha, self.space, self.min_weight = alpha, space, min_weight
        self.w = nn.Parameter(torch.ones(len(tasks)))
        self.adam = torch.optim.Adam([self.w], lr=lr)
        self.register_buffer("initial", torch.full((len(tasks),), float("nan")))

    def optimizer_parameters(self) -> list[nn.Parameter]:
        return []  # GradNorm updates its weights itself

    def _norms_on_parameters(self, losses: Losses, model: nn.Module) -> torch.Tensor:
        params = list(model.last_shared_parameters())
        rows = []
        for loss in losses.values():
            grads = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
            rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1).float()
                                   for g, p in zip(grads, params)]))
        jac = distributed.all_reduce_mean(torch.stack(rows))  # the global batch's gradients, one collective
        return jac.norm(dim=1).to(self.w.device)

    def backward(self, losses: Losses, features: Features, model: nn.Module) -> dict:
        distributed.require_same_tasks(list(losses), self.tasks)
        idx = torch.tensor([self.tasks.index(t) for t in losses], device=self.w.device)
        glob = distributed.global_values(losses, self.tasks)  # same rates and state on every rank
        values = torch.tensor([glob[t] for t in losses], dtype=torch.float32, device=self.w.device)
        fresh = torch.isnan(self.initial[idx])
        self.initial[idx[fresh]] = values[fresh]
        w = self.w.detach()[idx]

        if self.space == "representation":
            jac, own = task_gradients(losses, features, model)
            norms = distributed.global_gramian(jac).diagonal().clamp_min(0).sqrt().to(self.w.device)
            backward_through_shared(model, features, w.to(jac.device) @ jac, own, dict(zip(losses, w.tolist())))
        else:
            norms = self._norms_on_parameters(losses, model)
            sum(wi * loss for wi, loss in zip(w, losses.values())).backward()

        ratio = values / self.initial[idx]
        target = (w * norms).mean() * (ratio / ratio.mean()) ** self.alpha
        grad = torch.zeros_like(self.w)
        grad[idx] = torch.sign(w * norms - target) * norms
        self.w.grad = grad
        self.adam.step()
        self.w.grad = None
        with torch.no_grad():
            self.w.clamp_(min=self.min_weight)
            self.w.mul_(len(self.tasks) / self.w.sum())
        stats = {f"gradnorm/G/{t}": float(g) for t, g in zip(losses, w * norms)}
        return {"weights": dict(zip(losses, w.tolist())), **stats}

    def get_extra_state(self) -> dict:
        return {"adam": self.adam.state_dict()}

    def set_extra_state(self, state: dict) -> None:
        self.adam.load_state_dict(state["adam"])


@BALANCERS.register("gradnorm-rep")
@variants(REPRESENTATION_NORMS)
def gradnorm_rep(tasks: list[str], alpha: float = 1.5, lr: float = 0.025, min_weight: float = 1e-3) -> GradNorm:
    """GradNorm with the norms taken on the shared features (`space="representation"`)."""
    return GradNorm(tasks, alpha, lr, "representation", min_weight)


gradnorm_rep.spaces = ("representation",)
