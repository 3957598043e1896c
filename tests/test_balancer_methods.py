"""Known answers for the paper-faithful defaults (Nash-MTL's clip, GradDrop's per-element form,
GradNorm's layer) and for the methods wired from torchjd 0.18 or written here (FairGrad, GradVac,
ExcessMTL, PCD, CR-MOGM, DB-MTL, IMTL-L, STCH), plus the variant labels."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from perception_mtl.balancing import BALANCERS, balancer_variant, build_balancer
from perception_mtl.models.features import Features

from helpers import Probe, TwoTaskLinear, backward
from test_balancers import CONFLICT, train

ORTHOGONAL = torch.tensor([[3.0, 0.0, 0.0], [0.0, 4.0, 0.0]])  # norms 3 and 4
SPACES = ["parameter", "representation"]


def step(name: str, grads: torch.Tensor, **params) -> tuple[dict, torch.Tensor]:
    """One backward on a Probe whose task gradients are the rows of `grads`: (weights, shared grad)."""
    model = Probe(grads)
    result = backward(build_balancer(name, [str(i) for i in range(len(grads))], params), model)
    return result["weights"], model.theta.grad


@pytest.mark.parametrize("space", SPACES)
def test_nashmtl_clips_the_shared_gradient_to_max_norm(space):
    # orthogonal g_i: alpha_i (G alpha)_i = 1 gives alpha_i = 1/|g_i|, so J^T alpha = (1, 1, 0), norm sqrt 2
    weights, grad = step("nashmtl", ORTHOGONAL, space=space, max_norm=0.0)
    assert torch.allclose(grad, torch.tensor([1.0, 1.0, 0.0]), atol=1e-2), grad  # torchjd's own clip is off
    assert [weights["0"], weights["1"]] == pytest.approx([1 / 3, 1 / 4], abs=1e-2)
    weights, grad = step("nashmtl", ORTHOGONAL, space=space, max_norm=1.0)
    assert float(grad.norm()) == pytest.approx(1.0, abs=1e-5)  # clip_grad_norm_ on the shared parameters
    assert torch.allclose(grad, torch.tensor([1.0, 1.0, 0.0]) / math.sqrt(2), atol=1e-2), grad
    assert [weights["0"], weights["1"]] == pytest.approx([1 / 3 / math.sqrt(2), 1 / 4 / math.sqrt(2)], abs=1e-2)


@pytest.mark.parametrize("space", SPACES)
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_fairgrad_weights_solve_the_alpha_fair_condition(space, alpha):
    # G diagonal: G w = w^(-1/alpha) gives w_i = |g_i|^(-2 alpha / (1 + alpha))
    weights, grad = step("fairgrad", ORTHOGONAL, space=space, alpha=alpha, max_norm=0.0)
    expected = ORTHOGONAL.norm(dim=1) ** (-2 * alpha / (1 + alpha))
    assert [weights["0"], weights["1"]] == pytest.approx(expected.tolist(), rel=1e-4)
    assert torch.allclose(grad, expected @ ORTHOGONAL, rtol=1e-4)


@pytest.mark.parametrize("space", SPACES)
def test_gradvac_starts_as_pcgrad_then_aims_at_the_moving_average_cosine(space):
    g0, g1 = CONFLICT
    dot = float(g0 @ g1)
    model = Probe(CONFLICT)
    gradvac = build_balancer("gradvac", ["0", "1"], {"space": space, "beta": 0.01})
    first = backward(gradvac, model)["weights"]
    # target 0 on the first step: each gradient is projected off the other's (PCGrad, Yu et al. 2020)
    assert [first["0"], first["1"]] == pytest.approx([1 - dot / float(g0 @ g0), 1 - dot / float(g1 @ g1)], rel=1e-5)
    second = backward(gradvac, model)["weights"]
    a, b = second["1"] - 1, second["0"] - 1  # weights = (1 + b, 1 + a): rows g0 + a g1 and b g0 + g1
    target = 0.01 * dot / float(g0.norm() * g1.norm())  # the EMA after one step, from 0
    for mine, other in ((g0 + a * g1, g1), (b * g0 + g1, g0)):
        assert float(mine @ other / (mine.norm() * other.norm())) == pytest.approx(target, abs=1e-5)


def test_excessmtl_first_step_is_the_exponentiated_gradient_update():
    weights, _ = step("excessmtl", ORTHOGONAL)
    excess = (ORTHOGONAL ** 2 / torch.sqrt(ORTHOGONAL ** 2 + 1e-7)).sum(dim=1)  # g^T H^-1 g, AdaGrad H (eqs. 6-7)
    expected = torch.softmax(math.log(0.5) + 0.01 * excess, dim=0)  # eq. 9 from uniform weights
    assert [weights["0"], weights["1"]] == pytest.approx(expected.tolist(), rel=1e-5)
    with pytest.raises(ValueError, match=r"space='representation'; choose from \['parameter'\]"):
        build_balancer("excessmtl", ["0", "1"], {"space": "representation"})


@pytest.mark.parametrize("space", SPACES)
def test_pcd_follows_the_primary_task_and_guarantees_tau_to_the_other(space):
    tau, norms = 0.1, ORTHOGONAL.norm(dim=1)
    # normalised gradients are orthogonal unit vectors: d = u_p + tau u_o, rescaled to |g_p|
    weights, grad = step("pcd", ORTHOGONAL, space=space, tau=tau)
    assert [weights["0"], weights["1"]] == pytest.approx([1 / math.sqrt(1 + tau ** 2),
                                                          tau * 3 / 4 / math.sqrt(1 + tau ** 2)], rel=1e-5)
    weights, _ = step("pcd", ORTHOGONAL, space=space, tau=tau, primary="1")
    assert [weights["1"], weights["0"]] == pytest.approx([1 / math.sqrt(1 + tau ** 2),
                                                          tau * 4 / 3 / math.sqrt(1 + tau ** 2)], rel=1e-5)
    assert float(grad.norm()) == pytest.approx(float(norms[0]), rel=1e-5)
    with pytest.raises(ValueError, match="not among the tasks"):
        build_balancer("pcd", ["0", "1"], {"primary": "depth"})


def mgda_weight(g1: torch.Tensor, g2: torch.Tensor) -> float:
    """The weight of g1 in the minimum-norm point of the segment [g1, g2]."""
    return float(((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1))


@pytest.mark.parametrize("space", SPACES)
def test_cr_mogm_is_an_ema_of_the_base_weights(space):
    model = Probe(CONFLICT)
    cr = build_balancer("cr_mogm", ["0", "1"], {"space": space, "base": "mgda", "alpha": 0.9})
    first = backward(cr, model)["weights"]["0"]
    assert first == pytest.approx(mgda_weight(*CONFLICT), abs=1e-2)  # the first output is the base's
    model.g = ORTHOGONAL
    model.theta.grad = None
    second = backward(cr, model)["weights"]["0"]
    assert second == pytest.approx(0.9 * first + 0.1 * mgda_weight(*ORTHOGONAL), abs=1e-2)
    with pytest.raises(ValueError, match=r"base='nashmtl'; choose from \['aligned_mtl'"):
        build_balancer("cr_mogm", ["0", "1"], {"base": "nashmtl"})


def test_db_mtl_scales_the_ema_of_log_gradients_to_the_largest_norm():
    # Probe losses are 1 at theta = 0, so the gradient of log L_i is g_i
    model = Probe(ORTHOGONAL)
    db = build_balancer("db_mtl", ["0", "1"], {"beta": 0.9, "beta_sigma": 0.5})
    result = backward(db, model)
    units = ORTHOGONAL / ORTHOGONAL.norm(dim=1, keepdim=True)
    h = 0.1 * 4.0  # h_i = g_i + 0.9 (0 - g_i) = 0.1 g_i; every task scaled to the largest, 0.1 * 4
    assert torch.allclose(model.theta.grad, h * units.sum(0), atol=1e-6), model.theta.grad
    assert result["weights"] == pytest.approx({"0": 4 / 3, "1": 1.0}, rel=1e-5)
    assert float(model.c["0"].grad) == pytest.approx(2.0)  # heads: the gradient of their log-loss
    model.theta.grad = None
    backward(db, model)
    h = 0.1 + (1 - 0.1) * (1 - 0.9 / math.sqrt(2))  # beta_2 = beta / 2^beta_sigma
    assert torch.allclose(model.theta.grad, 4 * h * units.sum(0), atol=1e-6), model.theta.grad


def test_imtl_l_scales_converge_to_the_inverse_losses():
    model = TwoTaskLinear()
    imtl = build_balancer("imtl_l", ["a", "b"])
    opt = torch.optim.Adam(imtl.optimizer_parameters(), lr=0.05)
    targets = {"a": 2.0, "b": 0.25}
    for _ in range(300):  # fixed losses: only the scales learn, toward e^{s_i} = 1 / L_i
        opt.zero_grad(set_to_none=True)
        features, losses = model.forward_losses()
        weights = imtl.backward({t: losses[t] * 0 + v for t, v in targets.items()}, features, model)["weights"]
        opt.step()
    assert weights == pytest.approx({t: 1 / v for t, v in targets.items()}, rel=1e-2)
    opt.zero_grad(set_to_none=True)
    features, losses = model.forward_losses()
    imtl.backward({"a": losses["a"] * 0 + 4.0}, features, model)  # b unlabelled: its scale gets no gradient
    assert float(imtl.scalarizer.log_scale.grad[1]) == 0.0 and float(imtl.scalarizer.log_scale.grad[0]) > 0.5


def test_stch_warms_up_on_log_losses_then_smooths_the_max_over_the_nadir():
    stch = build_balancer("stch", ["a", "b"], {"mu": 0.5, "warmup": 2, "period": 2})
    model = TwoTaskLinear()
    for a, b in [(9.0, 9.0), (9.0, 9.0), (2.0, 4.0), (4.0, 8.0)]:  # the last warm-up epoch averages (3, 6)
        features, losses = model.forward_losses()
        weights = stch.backward({"a": losses["a"] * 0 + a, "b": losses["b"] * 0 + b}, features, model)["weights"]
        assert weights == pytest.approx({"a": 1 / a, "b": 1 / b})
    features, losses = model.forward_losses()
    weights = stch.backward({"a": losses["a"] * 0 + 3.0, "b": losses["b"] * 0 + 12.0}, features, model)["weights"]
    soft = torch.softmax(torch.tensor([math.log(3 / 3), math.log(12 / 6)]) / 0.5, dim=0)
    assert weights == pytest.approx({"a": 2 * float(soft[0]) / 3, "b": 2 * float(soft[1]) / 12}, rel=1e-5)


class Signed(nn.Module):
    """Shared theta (D,) added to fixed activations A (B, D): the representation A + theta; L_i = sum of
    G_i * representation, so dL_i/dA = G_i (B, D) exactly and theta's gradient sums the batch."""

    def __init__(self, grads: torch.Tensor, activations: torch.Tensor):
        super().__init__()
        self.g, self.a = grads, activations
        self.theta = nn.Parameter(torch.zeros(activations.shape[1]))
        self.c = nn.ParameterDict({str(i): nn.Parameter(torch.ones(())) for i in range(len(grads))})

    def forward_losses(self) -> tuple[Features, dict[str, torch.Tensor]]:
        rep = self.a + self.theta
        return Features({0: rep}, shared=True), {str(i): (g * rep).sum() + self.c[str(i)] ** 2
                                                 for i, g in enumerate(self.g)}

    def shared_parameters(self):
        return iter([self.theta])

    def task_parameters(self, task: str):
        return iter([self.c[task]])


def graddrop(grads: torch.Tensor, activations: torch.Tensor, **params) -> torch.Tensor:
    model = Signed(grads, activations)
    backward(build_balancer("graddrop", [str(i) for i in range(len(grads))], params), model)
    return model.theta.grad


def test_graddrop_takes_the_purity_of_batch_sums_of_signed_gradients():
    # columns: element 0 (a's samples disagree, the batch sums agree: P = 1), element 1 (sample 2's
    # activation is negative: S_a = 1 + 1, S_b = 1 - 1 = 0, so b is dropped), element 2 (P = 0)
    a = torch.tensor([[3.0, 1.0, -1.0], [-1.0, -1.0, -1.0]])
    b = torch.tensor([[1.0, 1.0, -2.0], [1.0, 1.0, 1.0]])
    activations = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0]])
    kept = torch.tensor([[4.0, 1.0, -3.0], [0.0, -1.0, 0.0]])  # per sample: both, a only, both
    assert torch.equal(graddrop(torch.stack([a, b]), activations), kept.sum(0))


def test_graddrop_draws_one_mask_per_element_with_the_purity_as_probability():
    torch.manual_seed(0)
    d = 4000
    grads = torch.stack([torch.full((2, d), 3.0), torch.full((2, d), -1.0)])  # S = (6, -2): P = 3/4
    grad = graddrop(grads, torch.ones(2, d))
    assert set(grad.unique().tolist()) == {6.0, -2.0}  # a mask is shared by the batch: never 3 - 1
    assert float((grad == 6.0).float().mean()) == pytest.approx(0.75, abs=0.03)
    grad = graddrop(grads, torch.ones(2, d), leak=1.0)  # leak 1: nothing dropped
    assert torch.equal(grad, torch.full((d,), 4.0))


def test_gradnorm_defaults_to_the_last_shared_layer_and_the_representation_form_is_gradnorm_rep():
    assert build_balancer("gradnorm", ["a", "b"]).space == "parameter"
    runs = []
    for name, params in (("gradnorm-rep", {}), ("gradnorm", {"space": "representation"})):
        torch.manual_seed(0)
        runs.append(train(TwoTaskLinear(), build_balancer(name, ["a", "b"], params), 5))
    assert runs[0] == runs[1]


def test_variants_label_what_departs_from_the_paper():
    faithful = [("gradnorm", {}), ("graddrop", {}), ("pcgrad", {"space": "parameter"}), ("nashmtl", {}),
                ("famo", {}), ("db_mtl", {}), ("fairgrad", {})]
    for name, params in faithful:
        assert balancer_variant(name, params) == "", name
    assert balancer_variant("pcgrad", {"space": "representation"}) == "representation space (MGDA-UB approximation)"
    assert balancer_variant("mgda", {"space": "representation"}) == "MGDA-UB (representation space)"
    assert balancer_variant("gradnorm-rep") == balancer_variant("gradnorm", {"space": "representation"}) != ""
    assert "torchjd GradDrop" in balancer_variant("graddrop", {"space": "parameter"})
    assert "next batch" in balancer_variant("famo", {"update": "next_batch"})
    assert BALANCERS.get("dwa").variant == balancer_variant("dwa") == "epochs of `period` steps"
    assert all(isinstance(BALANCERS.get(n).variant, str) for n in BALANCERS.names())
