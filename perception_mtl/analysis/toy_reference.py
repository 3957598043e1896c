"""Closed-form two-task update directions on the toy problem (analysis/toy.py), in numpy and
independent of torchjd, and Adam along them for many runs at once.

Why by hand: the papers' protocol (Adam, lr 1e-3, 100k steps) with our balancers costs 2 ms (equal)
to 0.5 s (MGDA's Frank-Wolfe at tolerance 1e-6 near the Pareto set) per step on this machine's
CPU, days for the figure; the closed forms run all methods and starts as one numpy batch, each
step a few array calls, in minutes. `tests/test_toy.py` checks that our balancers give these
directions (up to `FACTOR`) at fixed points, and `shadow` checks it along whole trajectories.

The closed forms (each takes g1, g2 as (2, S) arrays, coordinates first, S points, and returns (2, S)):
- MGDA: the min-norm point of the segment [g1, g2], gamma = clip(<g2 - g1, g2> / |g1 - g2|^2, 0, 1);
- PCGrad: each gradient minus its projection on the other when <g1, g2> < 0, averaged;
- CAGrad: g0 + (c |g0| / |g_w|) g_w with g_w = w g1 + (1 - w) g2, w minimising
  <g_w, g0> + c |g0| |g_w| over [0, 1]: a one-dimensional convex problem solved in closed form
  (stationary point of a + r (A w + B) / sqrt(A w^2 + 2 B w + C), clipped to [0, 1]);
- Nash-MTL = FairGrad (alpha = 1), IMTL-G, UPGrad and DualProj (ref_* below).
"""
from __future__ import annotations

import numpy as np
import torch

from perception_mtl.analysis import toy
from perception_mtl.balancing import build_balancer

C = 0.5  # CAGrad's c in its toy.py (toy.METHODS["cagrad"])


SIGN = np.array([[1.0], [-1.0]])  # f1, f2 (2, 1): the valleys and bowls mirror each other in x1


def grads(x: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """By hand: the gradients of f1 and f2 at x (2, S) (coordinates first, S points), each (2, S);
    both tasks at once on (2 tasks, S) arrays. At a bound (the gates' kink x2 = 0, the valleys' floor)
    the derivative passes, as `toy.floor` and the papers' torch.clamp give it (so (0, 0) moves).
    In x's dtype throughout (SIGN's +-1 and 7 are exact)."""
    x1, x2 = x
    sign = SIGN.astype(x.dtype)
    t2 = np.tanh(x2 / 2)
    a, b = np.maximum(t2, 0), np.maximum(-t2, 0)
    half = (1 - t2 * t2) / 2
    da, db = np.where(t2 >= 0, half, 0), np.where(t2 <= 0, -half, 0)
    th = np.tanh(x2)
    u = sign * (th - (7 + sign * x1) / 2)  # tanh(x2) - (x1 + 7) / 2 and (7 - x1) / 2 - tanh(x2)
    au = np.abs(u)
    ar = a * np.divide(1, u, out=np.zeros_like(u), where=au >= 5e-6)  # d log|u| / du, 0 below the floor
    e = x1 - 7 * sign  # x1 - 7 and x1 + 7
    x28 = x2 + 8
    q = e * e / 10 + (0.01 * (x28 * x28) - 20)
    gx = -ar / 2 + b * e / 5
    gy = da * (np.log(np.maximum(au, 5e-6)) + 6) + sign * (ar * (1 - th * th)) + db * q + b * 0.02 * x28
    g = np.empty((2, 2, len(x1)), x.dtype)  # (task, coordinate, S)
    g[:, 0], g[:, 1] = gx, gy
    g[0] *= scale
    return g[0], g[1]


def dot(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """(2, S), (2, S) -> (S,); the references below take and return (2, S)."""
    return p[0] * q[0] + p[1] * q[1]


def ref_equal(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    return (g1 + g2) / 2


def ref_mgda(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    gamma = np.minimum(np.maximum(dot(g2 - g1, g2) / np.maximum(dot(g1 - g2, g1 - g2), 1e-30), 0), 1)
    return gamma * g1 + (1 - gamma) * g2


def ref_pcgrad(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    c = np.minimum(dot(g1, g2), 0)
    return (g1 - c / np.maximum(dot(g2, g2), 1e-30) * g2 + g2 - c / np.maximum(dot(g1, g1), 1e-30) * g1) / 2


def ref_cagrad(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """min over w of a w + r sqrt(A w^2 + 2 B w + C) (+ const), g_w = g2 + w (g1 - g2)."""
    g0, e = (g1 + g2) / 2, g1 - g2
    r = C * np.sqrt(dot(g0, g0))
    a, big_a, big_b, big_c = dot(e, g0), dot(e, e), dot(e, g2), dot(g2, g2)
    disc, r2a, a2 = np.maximum(big_a * big_c - big_b * big_b, 0), r * r * big_a, a * a
    inner = r2a > a2  # else the objective is monotone: an end of [0, 1]
    s = -np.sign(a) * np.sqrt(disc * a2 / np.where(inner, r2a - a2, 1))
    w = np.where(inner, (s - big_b) / np.maximum(big_a, 1e-30), np.where(a > 0, 0.0, 1.0))
    w = np.minimum(np.maximum(w, 0), 1)
    gw = g2 + w * e  # as a vector: |g_w| from the Gramian cancels in float32 where g_w is small
    return g0 + r / np.maximum(np.sqrt(dot(gw, gw)), 1e-30) * gw


def ref_nash(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """Nash-MTL's alpha_i (G alpha)_i = 1 (FairGrad's G w = w^-1 at alpha = 1): subtracting the two
    equations, G11 a1^2 = G22 a2^2, so a2 = a1 sqrt(G11 / G22) and a1 = (G11 + G12 sqrt(G11 / G22))^-1/2.
    Where the gradients are opposite (the Pareto set) the bracket is 0, and where one is 0 alpha is
    undefined: the system has no solution there, and the direction is 0."""
    tiny = np.finfo(g1.dtype).tiny  # 1e-300 would be 0 in float32
    g11, g22 = dot(g1, g1), dot(g2, g2)
    ratio = np.sqrt(g11 / np.maximum(g22, tiny))
    bracket = g11 + dot(g1, g2) * ratio
    solvable = (bracket > 1e-12 * g11) & (g22 > 0)  # a zero gradient has no alpha either
    a1 = np.where(solvable, 1 / np.sqrt(np.maximum(bracket, tiny)), 0.0).astype(g1.dtype)
    return a1 * g1 + a1 * ratio * g2


def ref_imtl_g(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """IMTL-G: d = a g1 + (1 - a) g2 with equal projections on the unit gradients, <d, u1 - u2> = 0.
    Where the gradients point the same way (u1 = u2: on x2 = 0 both are vertical) every a qualifies;
    a = |g1| / (|g1| + |g2|) is what torchjd's pinv of the rank-1 Gramian picks."""
    n1, n2 = np.sqrt(dot(g1, g1)), np.sqrt(dot(g2, g2))
    du = g1 / n1 - g2 / n2
    same = dot(du, du) < 1e-12
    a = np.where(same, n1 / (n1 + n2), -dot(g2, du) / np.where(same, 1.0, dot(g1 - g2, du)))
    return a * g1 + (1 - a) * g2


def _to_dual_cone(g: np.ndarray, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """Projection of g on {d: <d, g1> >= 0, <d, g2> >= 0} (2-D, two gradients at an obtuse angle
    or not): onto the violated half-plane's boundary, or 0 when both are violated."""
    out = g.copy()
    for a, b in ((g1, g2), (g2, g1)):
        cut = dot(g, a) < 0
        moved = g - dot(g, a) / dot(a, a) * a
        out = np.where(cut, np.where(dot(moved, b) >= -1e-12, moved, 0.0), out)
    return out


def ref_upgrad(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    return (_to_dual_cone(g1, g1, g2) + _to_dual_cone(g2, g1, g2)) / 2


def ref_dualproj(g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    return _to_dual_cone((g1 + g2) / 2, g1, g2)


REFERENCES = {"equal": ref_equal, "mgda": ref_mgda, "pcgrad": ref_pcgrad, "cagrad": ref_cagrad}
TWO_TASK = {**REFERENCES, "nashmtl": ref_nash, "fairgrad": ref_nash, "imtl_g": ref_imtl_g, "upgrad": ref_upgrad,
            "dualproj": ref_dualproj}
# torchjd sums where the reference averages (equal, PCGrad) and drops CAGrad's 1 / (1 + c)
FACTOR = {"equal": 2.0, "mgda": 1.0, "pcgrad": 2.0, "cagrad": 1.0, "nashmtl": 1.0, "fairgrad": 1.0, "imtl_g": 1.0,
          "upgrad": 1.0, "dualproj": 1.0}
CLIPPED = {"nashmtl", "fairgrad"}  # max_norm = 1 clips the shared gradient, as their official code


def direction(method: str, g1: np.ndarray, g2: np.ndarray) -> np.ndarray:
    """The closed form of `method` at (2, S) gradients, clipped to norm 1 for `CLIPPED` methods; 0
    where both gradients are 0 (a stationary point, where the formulas divide 0 by 0)."""
    still = (dot(g1, g1) == 0) & (dot(g2, g2) == 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        d = np.where(still, 0.0, TWO_TASK[method](g1, g2)).astype(g1.dtype)
    if method in CLIPPED:
        d = d * np.minimum(1.0, 1 / np.maximum(np.sqrt(dot(d, d)), 1e-30))
    return d


def adam_paths(methods: list[str], starts, steps: int, lr: float, every: int | None = None, scale: float = 1.0,
               dtype=np.float32) -> np.ndarray:
    """torch's Adam (betas 0.9, 0.999, eps 1e-8) along `direction(method)`, every method from every
    start at once: x (2, M * S), method-major. Returns the paths (M, S, K, 2): x at step 0, every
    `every`-th step and the last (K = 2 points without `every`). Each column's arithmetic is the one
    of its run alone (elementwise, in `dtype`); numpy's cost is per call, so the batch of M * S runs
    costs about what one run does."""
    n = len(starts)
    x = np.tile(np.array(starts, dtype=dtype).T, len(methods))
    cols = [(method, slice(i * n, (i + 1) * n)) for i, method in enumerate(methods)]
    m, v, d = np.zeros_like(x), np.zeros_like(x), np.empty_like(x)
    points = [x.copy()]
    for t in range(1, steps + 1):
        g1, g2 = grads(x, scale)
        for method, col in cols:
            d[:, col] = direction(method, g1[:, col], g2[:, col])  # in dtype (CAGrad's w is float64)
        m, v = 0.9 * m + 0.1 * d, 0.999 * v + 0.001 * d * d
        x = x - lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
        if (every and t % every == 0) or t == steps:
            points.append(x.copy())
    return np.stack(points).transpose(2, 0, 1).reshape(len(methods), n, len(points), 2)


def ours(method: str, point: tuple[float, float], scale: float = 1.0) -> np.ndarray:
    """Our balancer's update direction (x.grad, float64 copy) at `point`, from a fresh balancer."""
    model = toy.ToyModel(point, scale)
    features, losses = model.forward_losses()
    build_balancer(toy.METHODS[method].balancer, list(toy.TASKS), toy.METHODS[method].params).backward(
        losses, features, model)
    return model.x.grad.double().numpy()


def shadow(method: str, path: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Our direction against the closed form at each point of `path` (K, 2). Returns (cosine,
    residual), each (K,): where the closed form moves (|FACTOR * d| > 1e-3 of the step scale: the
    tasks' mean gradient norm times FACTOR, or the clip norm 1), the cosine of ours with it, else
    NaN; where it stops (a stationary point: the optimum, the Pareto set), our step over the step
    scale, else NaN. Under Adam a small but steady step still moves x by about lr per step, so a
    residual is a departure too."""
    x = np.asarray(path, dtype=np.float64).T
    g1, g2 = grads(x, scale)
    want = (FACTOR[method] * direction(method, g1, g2)).T
    got = np.stack([ours(method, (float(p[0]), float(p[1])), scale) for p in path])
    step = (np.ones(len(path)) if method in CLIPPED
            else FACTOR[method] * (np.sqrt(dot(g1, g1)) + np.sqrt(dot(g2, g2))) / 2)
    size, ours_size = np.linalg.norm(want, axis=1), np.linalg.norm(got, axis=1)
    moving = size > 1e-3 * step
    cosine = np.where(moving, (got * want).sum(axis=1) / np.maximum(size * ours_size, 1e-300), np.nan)
    return cosine, np.where(moving, np.nan, ours_size / step)


def reference_runs(methods: list[str], starts, steps: int, lr: float, scale: float = 1.0,
                   every: int | None = None) -> list[toy.Run]:
    """The closed forms' trajectories under Adam as `toy.Run`s (method-major, then start)."""
    paths = adam_paths(methods, starts, steps, lr, every or max(1, steps // 1000), scale)
    return [toy.Run(m, tuple(s), torch.from_numpy(paths[i, j].copy()))
            for i, m in enumerate(methods) for j, s in enumerate(starts)]


def shadow_table(runs: list[toy.Run], scale: float = 1.0, checks: int = 20) -> tuple[str, list[dict]]:
    """Markdown and records: per run, its end point and outcome, and our balancer against the
    closed form (`shadow`) at `checks` points evenly spaced in steps along the path; a point is off
    when the cosine is below 0.999 or the residual above 1e-3."""
    lines = ["| method | start | end (x1, x2) | Pareto set | distance to (0, -8.3551) | moving: least cosine of ours "
             "| stopped: largest step of ours | points off |", "|---|---|---|---|---|---|---|---|"]
    records = []
    for r in runs:
        picks = r.path[np.linspace(0, len(r.path) - 1, checks).round().astype(int)].numpy()
        cosine, residual = shadow(r.method, picks, scale)
        o = toy.outcome(r.end)
        off = int(np.sum(cosine < 0.999) + np.sum(residual > 1e-3))
        least = float(np.nanmin(cosine)) if np.isfinite(cosine).any() else None
        largest = float(np.nanmax(residual)) if np.isfinite(residual).any() else None
        records.append({"method": r.method, "start": list(r.start), **o, "least_cosine": least,
                        "largest_residual": largest, "points_off": off, "points": checks,
                        "moving": int(np.isfinite(cosine).sum())})
        lines.append(f"| {r.method} | ({r.start[0]:g}, {r.start[1]:g}) | ({o['end'][0]:.3f}, {o['end'][1]:.3f}) | "
                     f"{'yes' if o['pareto'] else 'no'} | {o['dist_to_optimum']:.3f} | "
                     f"{'-' if least is None else f'{least:.5f}'} ({int(np.isfinite(cosine).sum())}) | "
                     f"{'-' if largest is None else f'{largest:.1e}'} ({int(np.isfinite(residual).sum())}) | "
                     f"{off} of {checks} |")
    return "\n".join(lines) + "\n", records
