"""Balancers on cases with known answers, on the real model, and across checkpoint/resume."""
from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from scipy.optimize import minimize
from torch import nn
from torchjd.aggregation import CRMOGMWeighting

from perception_mtl.balancing import BALANCERS, balancer_options, build_balancer
from perception_mtl.balancing.aggregators import CR_MOGM_BASES, METHODS
from perception_mtl.balancing.base import Balancer
from perception_mtl.balancing.graddrop import GradDropBalancer
from perception_mtl.balancing.uncertainty import FORMS
from perception_mtl.core.config import ConfigError
from perception_mtl.data.collate import collate
from perception_mtl.engine.builders import load_config
from perception_mtl.engine.trainer import Trainer

from helpers import TINY_TRAIN, Probe, TwoTaskLinear, backward, tiny_config

ROOT = Path(__file__).resolve().parents[1]


def weighted_grad_norms(model: TwoTaskLinear, weights: dict[str, float], space: str) -> dict[str, float]:
    """w_i |grad L_i| on the shared representation or on the shared layer's parameters."""
    features, losses = model.forward_losses()
    wrt = [features.levels[0]] if space == "representation" else list(model.shared.parameters())
    return {t: weights[t] * float(torch.cat([g.flatten() for g in torch.autograd.grad(
        loss, wrt, retain_graph=True)]).norm()) for t, loss in losses.items()}


def train(model: TwoTaskLinear, balancer, steps: int, lr: float = 0.01, model_lr: float | None = None) -> list[dict]:
    """Adam on the balancer's optimizer parameters, SGD (model_lr) or Adam (lr) on the model."""
    opt = torch.optim.Adam([*model.parameters(), *balancer.optimizer_parameters()], lr=lr)
    if model_lr is not None:
        opt = torch.optim.SGD(model.parameters(), lr=model_lr)
    results = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        results.append(backward(balancer, model))
        opt.step()
        with torch.no_grad():
            balancer.after_step(model.losses)
    return results


def mean_weights(results: list[dict], last: int = 100) -> dict[str, float]:
    return {t: sum(r["weights"][t] for r in results[-last:]) / last for t in results[-1]["weights"]}


# In parameter space the model is frozen: there the fixed point is w_i proportional to
# 1 / |grad_W L_i|; while the shared layer trains, its per-task norms swing as the weights
# move which task it serves, and the paper's raw weights oscillate around that point.
@pytest.mark.parametrize("space,model_lr", [("representation", 1e-3), ("parameter", 0.0)])
def test_gradnorm_equalises_gradient_norms_and_equal_does_not(space, model_lr):
    torch.manual_seed(0)
    model = TwoTaskLinear()
    results = train(model, build_balancer("gradnorm", ["a", "b"], {"alpha": 0.0, "space": space}), 300,
                    model_lr=model_lr)
    norms = weighted_grad_norms(model, mean_weights(results), space)
    assert abs(norms["a"] / norms["b"] - 1) < 0.10, norms
    assert sum(results[-1]["weights"].values()) == pytest.approx(2.0, rel=1e-5)  # renormalised to T

    model = TwoTaskLinear()
    results = train(model, build_balancer("equal", ["a", "b"]), 300, model_lr=model_lr)
    norms = weighted_grad_norms(model, mean_weights(results), space)
    assert norms["b"] / norms["a"] > 10, norms


def test_uncertainty_sigma2_converges_to_each_loss():
    torch.manual_seed(0)
    model = TwoTaskLinear()
    uw = build_balancer("uncertainty", ["a", "b"], {"forms": {"a": "regression", "b": "regression"}})  # optimum sigma^2 = L
    result = train(model, uw, 4000, lr=0.02)[-1]
    with torch.no_grad():
        losses = {t: float(v) for t, v in model.losses().items()}
    for t in ("a", "b"):
        assert result[f"uncertainty/sigma2/{t}"] == pytest.approx(losses[t], rel=0.2), (t, result, losses)
    assert losses["b"] > 20 * losses["a"]  # the scales really differ
    # the classification form's optimum is sigma^2 = 2 L
    uw = build_balancer("uncertainty", ["a", "b"], {"forms": {"a": "classification", "b": "classification"}})
    result = train(TwoTaskLinear(), uw, 4000, lr=0.02)[-1]
    assert result["uncertainty/sigma2/a"] == pytest.approx(2 * losses["a"], rel=0.25), result


CONFLICT = torch.tensor([[1.0, 0.0, 0.0], [-0.8, 0.6, 0.0]])  # cosine -0.8


@pytest.mark.parametrize("space", ["parameter", "representation"])
def test_pcgrad_direction_conflicts_with_no_task(space):
    model = Probe(CONFLICT)
    backward(build_balancer("pcgrad", ["0", "1"], {"space": space}), model)
    d = model.theta.grad
    assert float(CONFLICT[0] @ CONFLICT[1]) < 0
    assert (CONFLICT @ d >= -1e-6).all(), CONFLICT @ d
    assert model.c["0"].grad == pytest.approx(2.0) and model.c["1"].grad == pytest.approx(2.0)


@pytest.mark.parametrize("space", ["parameter", "representation"])
def test_mgda_gives_the_min_norm_point_of_the_hull(space):
    g1, g2 = CONFLICT
    gamma = float(((g2 - g1) @ g2 / ((g1 - g2) @ (g1 - g2))).clamp(0, 1))  # closed form, two vectors
    expected = gamma * g1 + (1 - gamma) * g2
    model = Probe(CONFLICT)
    result = backward(build_balancer("mgda", ["0", "1"], {"space": space}), model)
    assert torch.allclose(model.theta.grad, expected, atol=1e-2), (model.theta.grad, expected)
    assert result["weights"]["0"] == pytest.approx(gamma, abs=1e-2)


def test_gls_and_rlw_weights_are_the_scalarizers_derivatives():
    torch.manual_seed(0)
    model = TwoTaskLinear()
    features, losses = model.forward_losses()
    weights = build_balancer("gls", ["a", "b"]).backward(losses, features, model)["weights"]
    gm = (float(losses["a"].detach()) * float(losses["b"].detach())) ** 0.5
    assert weights["a"] == pytest.approx(gm / (2 * float(losses["a"].detach())), rel=1e-4)
    weights = backward(build_balancer("rlw", ["a", "b"]), model)["weights"]
    assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) > 0


def test_dwa_weights_follow_the_descent_rates():
    dwa = build_balancer("dwa", ["a", "b"], {"temperature": 2.0, "period": 2})
    model = TwoTaskLinear()
    schedule = [(4.0, 4.0), (4.0, 4.0), (2.0, 4.0), (2.0, 4.0)]  # a halves, b stays
    for a, b in schedule:
        features, losses = model.forward_losses()
        losses = {"a": losses["a"] * 0 + a, "b": losses["b"] * 0 + b}
        weights = dwa.backward(losses, features, model)["weights"]
        assert weights == {"a": 1.0, "b": 1.0}  # two periods are needed first
    expected = 2 * torch.softmax(torch.tensor([0.5, 1.0]) / 2.0, 0)
    assert dwa.current_weights(["a", "b"]) == pytest.approx(dict(zip("ab", expected.tolist())))


STATEFUL = [("gradnorm", {}), ("dwa", {"period": 3}), ("famo", {}), ("famo", {"update": "next_batch"}),
            ("uncertainty", {"forms": {"a": "regression", "b": "classification"}}), ("imtl_l", {}), ("stch", {"warmup": 2, "period": 3}), ("db_mtl", {}),
            ("excessmtl", {}), *[(name, {"space": space}) for name in ("nashmtl", "gradvac", "pcd")
                                 for space in ("parameter", "representation")],
            ("cr_mogm", {"base": "imtl_g"}), ("cr_mogm", {"base": "imtl_g", "space": "representation"})]


@pytest.mark.parametrize("name,params", STATEFUL)
def test_state_survives_checkpoint_and_resume(name, params):
    def setup():
        torch.manual_seed(0)
        model, balancer = TwoTaskLinear(), build_balancer(name, ["a", "b"], params)
        opt = torch.optim.Adam([*model.parameters(), *balancer.optimizer_parameters()], lr=0.01)
        return model, balancer, opt

    def run(model, balancer, opt, steps):
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            result = backward(balancer, model)
            opt.step()
            with torch.no_grad():
                balancer.after_step(model.losses)
        return result

    straight = setup()
    run(*straight, 10)
    expected = run(*straight, 5)

    interrupted = setup()
    run(*interrupted, 10)
    buffer = io.BytesIO()
    torch.save([part.state_dict() for part in interrupted], buffer)
    buffer.seek(0)
    resumed = setup()
    for part, state in zip(resumed, torch.load(buffer, weights_only=False)):
        part.load_state_dict(state)
    got = run(*resumed, 5)
    assert got == expected
    for a, b in zip(straight[0].parameters(), resumed[0].parameters()):
        assert torch.equal(a, b)


@pytest.fixture(scope="module")
def tiny_batch(tiny_world, tmp_path_factory):
    cfg = tiny_config(tiny_world, tmp_path_factory.mktemp("b"))
    trainer = Trainer(cfg)
    return collate([trainer.train_set[i] for i in range(3)])


@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_balancer_steps_the_real_model(name, tiny_world, tiny_batch, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path, f"balancer.name={name}"))
    before = [p.detach().clone() for p in trainer.model.shared_parameters()]
    stats = trainer.run_step(tiny_batch)
    weights = {k: v for k, v in stats.items() if k.startswith("train/weight/")}
    assert set(weights) == {"train/weight/det", "train/weight/seg", "train/weight/depth"}, stats
    assert all(torch.isfinite(torch.tensor(list(stats.values())))), stats
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.shared_parameters()))
    assert "train/grad/cos/det-seg" in stats  # log_every=1: gradient statistics are logged


def upgrad_weights(gramian: np.ndarray) -> np.ndarray:
    """UPGrad's weights (T,) for a Gramian G (T, T) (Quinton & Rey 2024): the sum over tasks i of
    argmin_{w >= e_i / T} w^T G w, each g_i / T projected onto the dual cone in weight space; solved
    with scipy's bounded L-BFGS-B on G / trace(G), not torchjd's quadprog."""
    g = gramian / np.trace(gramian)
    total = np.zeros(len(g))
    for lower in np.eye(len(g)) / len(g):
        result = minimize(lambda w: w @ g @ w, lower, jac=lambda w: 2 * g @ w, method="L-BFGS-B",
                          bounds=[(low, None) for low in lower], options={"ftol": 1e-15, "gtol": 1e-12})
        assert result.success, result.message
        total += result.x
    return total


def test_representation_space_upgrad_weights_on_the_real_model(tiny_world, tiny_batch, tmp_path):
    """The weights the trainer logs are UPGrad's for the Gramian of the task gradients on the shared
    features, computed here by autograd and scipy."""
    # train.seed=3: an initialisation whose task gradients conflict on this batch (at seeds 0, 2, 4, 5 they
    # do not, since FCOS's box distances are exp(x): UPGrad then gives the mean's weights, deviating < 5e-4)
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "balancer.name=upgrad",
                                  "balancer.params.space=representation", "train.seed=3"))
    features, losses = trainer.forward_losses(tiny_batch)
    feats = features.tensors()
    jac = torch.stack([torch.cat([g.flatten() for g in torch.autograd.grad(loss, feats, retain_graph=True)])
                       for loss in losses.values()]).double()
    expected = upgrad_weights((jac @ jac.T).numpy())
    stats = trainer.run_step(tiny_batch)
    got = np.array([stats[f"train/weight/{t}"] for t in losses])
    assert np.abs(expected - 1 / len(expected)).max() > 1e-3  # the projection acts: not the mean's weights
    np.testing.assert_allclose(got, expected, rtol=1e-4)  # torchjd adds reg_eps 1e-4 to the normalised Gramian


# every task a balancer YAML names (uncertainty's forms)
YAML_TASKS = ["det", "seg", "depth", "scene", "drivable"]
FORM_OF_FACTOR = {factor: form for form, factor in FORMS.items()}
CR_MOGM_BASE_OF = {type(METHODS[base].build(len(YAML_TASKS)).gramian_weighting): base for base in CR_MOGM_BASES}
# options whose value the built balancer holds other than as an attribute of that name (in the YAML's terms)
READERS: dict[str, Callable[[Balancer], Any]] = {
    "lr": lambda b: b.adam.param_groups[0]["lr"],
    "weight_decay": lambda b: b.adam.param_groups[0]["weight_decay"],
    "forms": lambda b: {t: FORM_OF_FACTOR[f] for t, f in b.factor.items()},
    "weights": lambda b: {t: w for t, w in b.weights.items() if w != 1.0},  # unnamed tasks get 1
    "base": lambda b: CR_MOGM_BASE_OF[type(next(m.weighting for m in aggregator_modules(b)
                                                if isinstance(m, CRMOGMWeighting)))],  # the weighting it smooths
    "space": lambda b: "representation" if isinstance(b, GradDropBalancer) else b.space,
}


def aggregator_modules(balancer: Balancer) -> list[nn.Module]:
    """The modules of a torchjd balancer's aggregator for all of YAML_TASKS (none for the others)."""
    aggregators = getattr(balancer, "aggregators", {})
    return list(aggregators[tuple(YAML_TASKS)].modules()) if aggregators else []


def effective(balancer: Balancer, option: str) -> Any:
    """The value of `option` the built balancer uses: a reader's, else the attribute of that name on
    the balancer or, first found, on its torchjd aggregator's modules (torchjd exposes its
    hyperparameters as properties). An option no object holds fails the test."""
    if option in READERS:
        return READERS[option](balancer)
    holders = [obj for obj in (balancer, *aggregator_modules(balancer)) if hasattr(obj, option)]
    assert holders, f"no attribute of {type(balancer).__name__} or its aggregator holds {option!r}"
    return getattr(holders[0], option)


@pytest.mark.parametrize("yaml", sorted((ROOT / "configs" / "balancer").glob("*.yaml")), ids=lambda p: p.stem)
def test_balancer_yaml_is_picked_by_name_and_is_what_the_built_balancer_uses(yaml):
    """Each YAML value equals the value the balancer built with the code's defaults actually uses
    (torchjd's objects included), and the one it uses when built from the YAML."""
    file = OmegaConf.load(yaml).balancer
    cfg = load_config(None, [f"balancer.name={file.name}"], defaults=ROOT / "configs" / "default.yaml")
    params = OmegaConf.to_container(cfg.balancer.params)
    assert params == OmegaConf.to_container(file.get("params", OmegaConf.create({})))
    assert set(params) <= set(balancer_options(file.name))
    from_code, from_yaml = build_balancer(file.name, YAML_TASKS), build_balancer(file.name, YAML_TASKS, params)
    for option, value in params.items():
        assert effective(from_code, option) == value, (option, value, effective(from_code, option))
        assert effective(from_yaml, option) == value, (option, value, effective(from_yaml, option))


def test_unknown_balancer_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['beta'\]; valid: \['alpha', 'lr'"):
        load_config(None, ["tasks=[det,seg,depth]", "balancer.name=gradnorm", "balancer.params.beta=1"], defaults=None)
    with pytest.raises(ConfigError, match="not among the tasks"):
        load_config(None, ["tasks=[det,seg,depth]", "balancer.params.weights.lidar=2"], defaults=None)


def test_trainer_resume_restores_balancer_state(tiny_world, tmp_path):
    """FAMO (logits, its own Adam, last losses) through the trainer's checkpoint."""
    extra = ["balancer.name=famo", "train.checkpoint_every=2"]
    straight = Trainer(tiny_config(tiny_world, tmp_path / "a", "train.steps=4", *extra))
    straight.fit()
    Trainer(tiny_config(tiny_world, tmp_path / "b", "train.steps=2", *extra)).fit()
    resumed = Trainer(tiny_config(tiny_world, tmp_path / "b", "train.steps=4", "resume=true", *extra))
    assert resumed.step == 2 and resumed.balancer.before
    resumed.fit()
    assert torch.equal(straight.balancer.logits, resumed.balancer.logits)
    for a, b in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


def test_bench_balancers_prints_a_table(tiny_world, tmp_path):
    cmd = [sys.executable, str(ROOT / "tools" / "bench_balancers.py"), "--methods", "equal,famo,pcgrad",
           "--steps", "1", "--warmup", "0", "--no-memory", *TINY_TRAIN, f"data.root={tiny_world}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "WANDB_MODE": "disabled"})
    rows = [line for line in out.stdout.splitlines() if line.startswith("| ")]
    names = [row.split("|")[1].strip() + "/" + row.split("|")[2].strip() for row in rows[1:]]
    assert names == ["equal/loss", "famo/loss, same_batch", "famo/loss, next_batch",
                     "pcgrad/representation", "pcgrad/parameter"], out.stdout
    assert rows[1].split("|")[4].strip() == "1.00"


def test_bench_balancers_compares_the_jacobian_with_autograms_gramian(tiny_world):
    cmd = [sys.executable, str(ROOT / "tools" / "bench_balancers.py"), "--gramian", "--steps", "1", "--warmup", "0",
           *TINY_TRAIN, f"data.root={tiny_world}"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, env={**os.environ, "WANDB_MODE": "disabled"})
    rows = [line.split("|") for line in out.stdout.splitlines() if line.startswith("| ")]
    assert [row[1].strip() for row in rows[1:]] == ["mtl_backward + jac_to_grad",
                                                    "autogram Gramian + weighted backward"]
    assert rows[1][3].strip() == "1.00" and float(rows[2][2]) > 0 and float(rows[2][4]) > 0
