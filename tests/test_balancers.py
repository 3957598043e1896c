"""Balancers on cases with known answers, on the real model, and across checkpoint/resume."""
from __future__ import annotations

import inspect
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping

import pytest
import torch
from omegaconf import OmegaConf
from torch import nn

from perception_mtl.balancing import BALANCERS, balancer_options, build_balancer
from perception_mtl.config import ConfigError, load_config
from perception_mtl.data.collate import collate
from perception_mtl.engine.trainer import Trainer

from helpers import TINY_TRAIN, tiny_config

ROOT = Path(__file__).resolve().parents[1]


class TwoTaskLinear(nn.Module):
    """A shared linear layer and one linear head per task; task b's loss is `scale` times larger.

    Targets carry noise (variance 0.5 for a and for b before scaling), so the losses settle at
    known floors. Exposes the model interface balancers use."""

    def __init__(self, scale: float = 100.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.shared = nn.Linear(16, 16)
        self.heads = nn.ModuleDict({"a": nn.Linear(16, 1), "b": nn.Linear(16, 1)})
        self.x = torch.randn(256, 16, generator=g)
        self.y = {t: self.x @ torch.randn(16, 1, generator=g) + 0.5 ** 0.5 * torch.randn(256, 1, generator=g)
                  for t in self.heads}
        self.scale = {"a": 1.0, "b": scale}
        self.shared_representation: dict[int, torch.Tensor] = {}

    def losses(self) -> dict[str, torch.Tensor]:
        rep = self.shared(self.x)
        self.shared_representation = {0: rep}
        return {t: self.scale[t] * ((head(rep) - self.y[t]) ** 2).mean() for t, head in self.heads.items()}

    def shared_parameters(self):
        return self.shared.parameters()

    def last_shared_parameters(self):
        return self.shared.parameters()

    def task_parameters(self, task: str):
        return self.heads[task].parameters()


def weighted_grad_norms(model: TwoTaskLinear, weights: dict[str, float], space: str) -> dict[str, float]:
    """w_i |grad L_i| on the shared representation or on the shared layer's parameters."""
    losses = model.losses()
    wrt = [model.shared_representation[0]] if space == "representation" else list(model.shared.parameters())
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
        results.append(balancer.backward(model.losses(), model))
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
    uw = build_balancer("uncertainty", ["a", "b"], {"forms": {}})  # regression form: optimum sigma^2 = L
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


class Probe(nn.Module):
    """Shared vector theta; the representation is theta itself and L_i = <g_i, theta> + c_i^2, so the
    per-task gradients on theta (and on the representation) are exactly g_i."""

    def __init__(self, grads: torch.Tensor):
        super().__init__()
        self.g = grads
        self.theta = nn.Parameter(torch.zeros(grads.shape[1]))
        self.c = nn.ParameterDict({str(i): nn.Parameter(torch.ones(())) for i in range(len(grads))})
        self.shared_representation: dict[int, torch.Tensor] = {}

    def losses(self) -> dict[str, torch.Tensor]:
        rep = self.theta * 1.0
        self.shared_representation = {0: rep}
        return {str(i): g @ rep + self.c[str(i)] ** 2 for i, g in enumerate(self.g)}

    def shared_parameters(self):
        return iter([self.theta])

    def task_parameters(self, task: str):
        return iter([self.c[task]])


CONFLICT = torch.tensor([[1.0, 0.0, 0.0], [-0.8, 0.6, 0.0]])  # cosine -0.8


@pytest.mark.parametrize("space", ["parameter", "representation"])
def test_pcgrad_direction_conflicts_with_no_task(space):
    model = Probe(CONFLICT)
    build_balancer("pcgrad", ["0", "1"], {"space": space}).backward(model.losses(), model)
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
    result = build_balancer("mgda", ["0", "1"], {"space": space}).backward(model.losses(), model)
    assert torch.allclose(model.theta.grad, expected, atol=1e-2), (model.theta.grad, expected)
    assert result["weights"]["0"] == pytest.approx(gamma, abs=1e-2)


def test_gls_and_rlw_weights_are_the_scalarizers_derivatives():
    torch.manual_seed(0)
    model = TwoTaskLinear()
    losses = model.losses()
    weights = build_balancer("gls", ["a", "b"]).backward(losses, model)["weights"]
    gm = (float(losses["a"].detach()) * float(losses["b"].detach())) ** 0.5
    assert weights["a"] == pytest.approx(gm / (2 * float(losses["a"].detach())), rel=1e-4)
    weights = build_balancer("rlw", ["a", "b"]).backward(model.losses(), model)["weights"]
    assert sum(weights.values()) == pytest.approx(1.0) and min(weights.values()) > 0


def test_dwa_weights_follow_the_descent_rates():
    dwa = build_balancer("dwa", ["a", "b"], {"temperature": 2.0, "period": 2})
    model = TwoTaskLinear()
    schedule = [(4.0, 4.0), (4.0, 4.0), (2.0, 4.0), (2.0, 4.0)]  # a halves, b stays
    for a, b in schedule:
        losses = model.losses()
        losses = {"a": losses["a"] * 0 + a, "b": losses["b"] * 0 + b}
        weights = dwa.backward(losses, model)["weights"]
        assert weights == {"a": 1.0, "b": 1.0}  # two periods are needed first
    expected = 2 * torch.softmax(torch.tensor([0.5, 1.0]) / 2.0, 0)
    assert dwa.current_weights(["a", "b"]) == pytest.approx(dict(zip("ab", expected.tolist())))


STATEFUL = [("gradnorm", {}), ("dwa", {"period": 3}), ("famo", {}), ("famo", {"update": "next_batch"}),
            ("uncertainty", {}), ("imtl_l", {}), ("stch", {"warmup": 2, "period": 3}), ("db_mtl", {}),
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
            result = balancer.backward(model.losses(), model)
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
    stats = trainer.train_step(tiny_batch)
    weights = {k: v for k, v in stats.items() if k.startswith("train/weight/")}
    assert set(weights) == {"train/weight/det", "train/weight/seg", "train/weight/depth"}, stats
    assert all(torch.isfinite(torch.tensor(list(stats.values())))), stats
    assert any(not torch.equal(b, p) for b, p in zip(before, trainer.model.shared_parameters()))
    assert "train/grad/cos/det-seg" in stats  # log_every=1: gradient statistics are logged


def test_representation_space_runs_on_the_real_model(tiny_world, tiny_batch, tmp_path):
    trainer = Trainer(tiny_config(tiny_world, tmp_path, "balancer.name=upgrad",
                                  "balancer.params.space=representation"))
    stats = trainer.train_step(tiny_batch)
    assert sum(stats[f"train/weight/{t}"] for t in ("det", "seg", "depth")) > 0


@pytest.mark.parametrize("yaml", sorted((ROOT / "configs" / "balancer").glob("*.yaml")), ids=lambda p: p.stem)
def test_balancer_yaml_is_picked_by_name_and_matches_the_code_defaults(yaml):
    file = OmegaConf.load(yaml).balancer
    cfg = load_config(None, [f"balancer.name={file.name}"], defaults=ROOT / "configs" / "default.yaml")
    assert cfg.balancer.params == file.get("params", {})
    assert set(cfg.balancer.params) <= set(balancer_options(file.name))
    factory = BALANCERS.get(file.name)
    signature = inspect.signature(factory)
    for key, value in cfg.balancer.params.items():
        if key in signature.parameters and signature.parameters[key].default is not inspect.Parameter.empty:
            default = signature.parameters[key].default
            default = dict(default) if isinstance(default, Mapping) else default
            value = OmegaConf.to_container(cfg.balancer.params)[key]
            assert value == default or (default is None and value == {}), key  # static's weights: None or {}


def test_unknown_balancer_parameter_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=r"no parameter\(s\) \['beta'\]; valid: \['alpha', 'lr'"):
        load_config(None, ["balancer.name=gradnorm", "balancer.params.beta=1"], defaults=None)
    with pytest.raises(ConfigError, match="not among the tasks"):
        load_config(None, ["balancer.params.weights.lidar=2"], defaults=None)


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
