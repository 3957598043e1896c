"""Our balancers side by side with LibMTL (the library most MTL papers use): 1.1.5 from PyPI for
EW, UW, GradNorm, DWA, RLW, GLS, MGDA, PCGrad, GradVac, CAGrad, IMTL and GradDrop; a transcription of
its repository's newer files for Nash-MTL, Aligned-MTL and DB-MTL (tests/libmtl_newer.py). Same tiny
model (helpers.ThreeTasks), batch, seeds and state; each side steps with its own Adam at LibMTL's lr.

Every row of ROWS asserts the least cosine and the largest relative difference of the shared
gradients over the steps: agreements, and each documented difference (so that the test fails when
either changes). docs/LIBMTL.md's table is `python tests/test_libmtl.py`'s output.
"""
from __future__ import annotations

import contextlib
import math
import types
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_mtl.balancing import build_balancer

from helpers import ThreeTasks, TwoTaskLinear, backward
from libmtl_host import TASKS, libmtl_model, Record, import_libmtl, run_pair, torch_shuffle
from libmtl_newer import AlignedMTL, DBMTL, NashMTL

LIB = import_libmtl()
W = LIB.weighting
REGRESSION = {"forms": {t: "regression" for t in TASKS}}
EXACT = ((1 - 1e-6, 1.0), (0.0, 1e-5))  # (cosine range, relative difference range): float32 noise


def libmtl_uw_init(balancer, lib) -> None:
    with torch.no_grad():
        balancer.log_var.fill_(-0.5)  # LibMTL's UW starts at s_i = -0.5


def gradnorm_l0(balancer, lib) -> None:
    lib.train_loss_buffer[:, 0] = lib.losses().detach().numpy()  # LibMTL's L(0): epoch 0's mean loss


@dataclass(frozen=True)
class Row:
    """Ours (`name`, `params`) against LibMTL's `weighting` (`kwargs`); `bounds` on the cosine and on
    the relative difference of `factor` times our shared gradient to LibMTL's, over the steps."""
    name: str
    params: dict
    weighting: type
    kwargs: dict
    bounds: tuple = EXACT
    factor: float = 1.0
    run: dict = field(default_factory=dict)
    shuffled: bool = False  # LibMTL draws its task orders from the torch RNG, as torchjd

    def record(self) -> Record:
        with torch_shuffle(self.weighting) if self.shuffled else contextlib.nullcontext():
            return run_pair(self.name, self.params, self.weighting, self.kwargs, **self.run)


ROWS = {
    "EW": Row("equal", {}, W.EW, {}),
    "UW, LibMTL's init and form": Row("uncertainty", REGRESSION, W.UW, {}, run={"setup": libmtl_uw_init}),
    "UW, our init s = 0": Row("uncertainty", REGRESSION, W.UW, {}, ((1 - 1e-6, 1.0), (0.39, 0.40))),
    "GradNorm, first step": Row("gradnorm", {}, W.GradNorm, {"alpha": 1.5},
                                run={"first_epoch": 1, "setup": gradnorm_l0, "steps": 1}),
    "GradNorm, 4 steps": Row("gradnorm", {}, W.GradNorm, {"alpha": 1.5}, ((0.99, 0.9999), (0.1, 0.4)),
                             run={"first_epoch": 1, "setup": gradnorm_l0}),
    "DWA, period 1": Row("dwa", {"period": 1}, W.DWA, {"T": 2.0}, run={"steps": 5}),
    "RLW": Row("rlw", {}, W.RLW, {"dist": "Normal"}),
    "GLS": Row("gls", {}, W.GLS, {}),
    "MGDA, torchjd's tolerance (epsilon 1e-3, 100 iterations)": Row(
        "mgda", {"epsilon": 1e-3, "max_iters": 100}, W.MGDA, {"mgda_gn": "none"}, ((0.997, 0.998), (0.06, 0.08)),
        run={"steps": 2}),
    "MGDA, our defaults (epsilon 1e-6, 10^4 iterations)": Row("mgda", {}, W.MGDA, {"mgda_gn": "none"},
                                                              ((1 - 1e-5, 1.0), (0.0, 2e-3)), run={"steps": 1}),
    "MGDA, representation (rep_grad)": Row("mgda", {"space": "representation"}, W.MGDA, {"mgda_gn": "none"},
                                           ((0.1, 0.3), (0.9, 1.0)), run={"rep_grad": True, "steps": 2}),
    "PCGrad": Row("pcgrad", {}, W.PCGrad, {}, shuffled=True),
    "GradVac, beta 0.5": Row("gradvac", {"beta": 0.5}, W.GradVac, {"beta": 0.5}, ((1 - 1e-6, 1.0), (0.0, 1e-3)),
                             shuffled=True),
    "CAGrad, c 0.5, rescale 0": Row("cagrad", {"c": 0.5}, W.CAGrad, {"calpha": 0.5, "rescale": 0},
                                    ((1 - 1e-6, 1.0), (0.0, 1e-4))),
    "CAGrad, c 0.5, rescale 1 (LibMTL's)": Row("cagrad", {"c": 0.5}, W.CAGrad, {"calpha": 0.5, "rescale": 1},
                                               ((1 - 1e-6, 1.0), (0.0, 1e-4)), factor=1 / 1.25),
    "IMTL, first step": Row("imtl_g", {}, W.IMTL, {}, ((1 - 1e-6, 1.0), (0.0, 3e-5)), run={"steps": 1}),
    "IMTL, 4 steps": Row("imtl_g", {}, W.IMTL, {}, ((1 - 1e-6, 1.0), (1e-4, 1e-3))),
    "GradDrop": Row("graddrop", {}, W.GradDrop, {"leak": 0.0}, run={"rep_grad": True}),
    "Nash-MTL (repository)": Row("nashmtl", {}, NashMTL, {"max_norm": 1.0}, ((1 - 1e-6, 1.0), (0.0, 1e-4))),
    "Aligned-MTL (repository)": Row("aligned_mtl", {}, AlignedMTL, {}, ((1 - 1e-6, 1.0), (0.0, 1e-4)), factor=3.0),
    "DB-MTL (repository)": Row("db_mtl", {}, DBMTL, {"DB_beta": 0.9, "DB_beta_sigma": 0.0}),
}


def summary(row: Row) -> tuple[float, float, Record]:
    """(least cosine, largest relative difference after `factor`, the record)."""
    record = row.record()
    return float(record.cosine().min()), float(record.rel(row.factor).max()), record


@pytest.mark.parametrize("label", list(ROWS))
def test_shared_gradient_against_libmtl(label):
    row = ROWS[label]
    cos, rel, record = summary(row)
    (cos_lo, cos_hi), (rel_lo, rel_hi) = row.bounds
    assert cos_lo <= cos <= cos_hi and rel_lo <= rel <= rel_hi, (label, cos, rel)
    if row.bounds[1][1] <= 1e-4 and row.name not in ("gls", "graddrop", "db_mtl", "gradnorm", "cagrad", "nashmtl"):
        # the weights agree too (GLS's, DB-MTL's, Nash-MTL's and GradNorm's logs: tests below; GradDrop logs
        # none; LibMTL's CAGrad logs the weights of its inner problem)
        assert np.allclose(np.stack(record.w_ours) * row.factor, np.stack(record.w_lib), rtol=1e-4, atol=1e-5)


def test_gls_logs_the_derivative_where_libmtl_logs_l_over_t_times_the_product():
    record = ROWS["GLS"].record()
    losses = record.losses[0].astype(np.float64)
    geometric = np.prod(losses) ** (1 / 3)
    assert np.allclose(record.w_ours[0], geometric / (3 * losses), rtol=1e-5)  # dS/dL_i: what the gradient uses
    assert np.allclose(record.effective("ours")[0], record.w_ours[0], rtol=1e-3)
    assert np.allclose(record.w_lib[0], losses / (3 * np.prod(losses)), rtol=1e-5)  # LibMTL's GLS.py return value


def test_gradvac_1_1_5_moves_its_ema_only_where_it_corrects():
    # at the first step every target is 0: a pair is corrected where its cosine is negative, and there both
    # update their EMA; LibMTL 1.1.5 leaves the other pairs' at 0 (its repository fixed this in commit d2d84fa,
    # 2024-02-15: the EMA moves for every pair, as in the paper and torchjd)
    with torch_shuffle(W.GradVac):
        record = run_pair("gradvac", {"beta": 0.5}, W.GradVac, {"beta": 0.5}, steps=1)
    ours = next(iter(record.balancer.aggregators.values())).gramian_weighting._phi_t
    theirs = record.host.rho_T
    pairs = ~torch.eye(3, dtype=torch.bool)
    moved = theirs != 0
    assert (pairs & moved).any() and (pairs & ~moved).any()
    assert torch.allclose(ours[moved], theirs[moved], atol=1e-6)
    assert (ours[pairs & ~moved].abs() > 1e-3).all()


def test_cagrad_in_libmtl_1_1_5_runs_with_three_tasks_only():
    # CAGrad.py 1.1.5 reshapes w to (1, 3) (fixed in its repository, commit 01cb7f1); ours takes any number
    host = libmtl_model(W.CAGrad, TwoTaskLinear())
    with pytest.raises(ValueError, match="reshape"):
        host.backward(host.losses(), calpha=0.5, rescale=1)
    model = TwoTaskLinear()
    backward(build_balancer("cagrad", ["a", "b"], {"c": 0.5}), model)
    assert model.shared.weight.grad.norm() > 0


def test_gradnorm_same_gradient_of_l_grad_then_our_weights_move_faster():
    spied = []

    def spy(balancer, lib):
        gradnorm_l0(balancer, lib)
        step = balancer.adam.step
        balancer.adam.step = lambda: (spied.append(balancer.w.grad.clone()), step())[1]

    first = run_pair("gradnorm", {}, W.GradNorm, {"alpha": 1.5}, steps=1, first_epoch=1, setup=spy)
    # LibMTL's w = T softmax(logits): dL_grad/dlogits = T (diag(p) - p p^T) dL_grad/dw, p = 1/3 at the start
    assert torch.allclose(first.host.loss_scale.grad, spied[0] - spied[0].mean(), rtol=1e-4, atol=1e-6)
    record = ROWS["GradNorm, 4 steps"].record()
    assert np.allclose(record.w_ours[0], 1) and np.allclose(record.w_lib[0], 1)
    ours_moved, lib_moved = np.abs(record.w_ours[1] - 1).max(), np.abs(record.w_lib[1] - 1).max()
    assert 0.02 < ours_moved < 0.06 and lib_moved < 1e-3  # our Adam at lr 0.025 on w; LibMTL's at 1e-4 on logits


def test_logged_weights_nash_before_the_clip_db_mtl_ones():
    nash = ROWS["Nash-MTL (repository)"].record()
    clip = [min(1.0, 1.0 / float(np.linalg.norm(w @ j.numpy()))) for w, j in zip(nash.w_lib, nash.jac_lib)]
    assert np.allclose(np.stack(nash.w_ours), np.stack(nash.w_lib) * np.array(clip)[:, None], rtol=1e-3)
    db = ROWS["DB-MTL (repository)"].record()
    assert np.allclose(db.w_lib, 1.0)
    assert np.allclose(db.w_ours[-1], db.host.alpha.numpy(), rtol=1e-5)


def test_libmtl_1_1_5_needs_the_two_torch_2_fixes_of_the_host():
    import torchvision
    assert not (Path(torchvision.models.__file__).parent / "utils.py").exists()  # LibMTL's resnet.py imports it
    host = libmtl_model(W.PCGrad, ThreeTasks())
    own = LIB.architecture.abstract_arch.AbsArchitecture.zero_grad_share_params  # encoder.zero_grad(): to None
    host.zero_grad_share_params = types.MethodType(own, host)
    with pytest.raises(AttributeError, match="'NoneType' object has no attribute 'data'"):
        host.backward(host.losses())


def test_defaults_that_differ_are_the_documented_ones():
    defaults = LIB.config.LibMTL_args
    assert defaults.get_default("lr") == 1e-4 and defaults.get_default("calpha") == 0.5
    assert defaults.get_default("rescale") == 1 and defaults.get_default("beta") == 0.5  # GradVac's beta
    assert build_balancer("cagrad", TASKS).make(3).gramian_weighting.c == 0.4
    assert next(iter(build_balancer("gradvac", TASKS).aggregators.values())).beta == 0.01
    assert torch.equal(build_balancer("uncertainty", TASKS, REGRESSION).log_var, torch.zeros(3))
    assert math.isclose(float(libmtl_model(W.UW, ThreeTasks()).loss_scale[0].detach()), -0.5)


if __name__ == "__main__":  # docs/LIBMTL.md's table numbers
    print("| weighting | cosine (least) | relative difference (largest; ours x factor) | weights: max abs difference |")
    print("|---|---|---|---|")
    for label, row in ROWS.items():
        cos, rel, record = summary(row)
        raw = "" if row.factor == 1 else f" (x {row.factor:g}; {record.rel().max():.2e} without)"
        # the effective weights (J^T w = the shared gradient); GradDrop's and DB-MTL's gradients are not J^T w
        weights = "n/a" if row.name in ("graddrop", "db_mtl") else \
            f"{np.abs(record.effective('ours') * row.factor - record.effective('lib')).max():.1e}"
        print(f"| {label} | {cos:.6f} | {rel:.2e}{raw} | {weights} |")
