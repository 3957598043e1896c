"""Builders that turn an object's pose into quads: vehicles, people, bicycles, street furniture.

All builders return quads in world coordinates (see `camera.py`) sharing one label and
instance id, so an object's visible pixels form exactly one Cityscapes instance.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_mtl.data.world.primitives import Cuboid, Quad

LABEL = {"person": 24, "rider": 25, "car": 26, "truck": 27, "bus": 28, "bicycle": 33,
         "pole": 17, "traffic light": 19, "traffic sign": 20, "vegetation": 21,
         "building": 11, "wall": 12, "fence": 13}

CAR_COLORS = [(0.85, 0.85, 0.86), (0.08, 0.08, 0.09), (0.6, 0.6, 0.62), (0.65, 0.08, 0.07),
              (0.1, 0.2, 0.5), (0.35, 0.36, 0.38), (0.75, 0.7, 0.55), (0.15, 0.35, 0.2)]
GLASS, TYRE = (0.08, 0.1, 0.13), (0.05, 0.05, 0.05)


@dataclass
class Placed:
    """An object's quads and the ground rectangle it occupies (for collisions and shadows)."""

    quads: list[Quad]
    footprint: tuple[float, float, float, float]
    casts_shadow: bool = False


def _wheels(body: Cuboid, eye: np.ndarray, kw: dict) -> list[Quad]:
    """Four tyres just outside the body's sides; side faces drawn as discs."""
    r, quads = 0.33, []
    for side in (-1, 1):
        x = body.x + side * (body.width / 2 - 0.1)
        for z in (body.z + 0.5, body.z + body.length - 1.2):
            tyre = Cuboid(x, z, 0.24, 2 * r, 2 * r)
            for q in tyre.faces(eye, **{**kw, "color": TYRE, "texture": "plain"}):
                q.shape = "ellipse" if q.axis == 0 else "rect"
                quads.append(q)
    return quads


def vehicle(kind: str, x: float, z: float, eye: np.ndarray, instance: int,
            rng: np.random.Generator, oncoming: bool, lights_on: bool) -> Placed:
    """A car, truck or bus whose nearest face is at depth z, centred at lateral x."""
    kw = dict(label=LABEL[kind], instance=instance, seed=int(rng.integers(1 << 16)))
    color = CAR_COLORS[rng.integers(len(CAR_COLORS))] if kind == "car" else tuple(rng.uniform(0.2, 0.9, 3))
    light_color = (1.0, 0.95, 0.8) if oncoming else (0.95, 0.08, 0.05)
    if kind == "car":
        w, length = rng.uniform(1.65, 1.95), rng.uniform(4.0, 4.9)
        body = Cuboid(x, z, w, rng.uniform(0.7, 0.85), length, bottom=0.3)
        top = body.bottom + body.height
        cabin = Cuboid(x, z + 0.8, w - 0.2, rng.uniform(0.4, 0.55), length - 1.9, bottom=top)
        parts = [body, cabin]
        window = Quad(2, cabin.z - 0.01, x - w / 2 + 0.2, x + w / 2 - 0.2, top + 0.05,
                      top + cabin.height - 0.05, color=GLASS, texture="plain", **kw)
    elif kind == "truck":
        w = rng.uniform(2.3, 2.5)
        cargo = Cuboid(x, z, w, rng.uniform(2.4, 3.0), rng.uniform(5.0, 7.0), bottom=0.9)
        cab = Cuboid(x, z + cargo.length + 0.2, w - 0.1, 2.4, 2.2, bottom=0.6)
        parts, window = [cargo, cab], None
        body = Cuboid(x, z, w, 0.3, cargo.length + 2.4, bottom=0.6)  # chassis between wheels
        parts.append(body)
    else:
        body = Cuboid(x, z, 2.5, 2.8, rng.uniform(10.5, 12.0), bottom=0.35)
        parts = [body]
        window = Quad(2, z - 0.01, x - 1.1, x + 1.1, 1.6, 2.7, color=GLASS, texture="plain", **kw)
    quads = [q for p in parts for q in p.faces(eye, color=color, texture="bus" if kind == "bus" else "noise", **kw)]
    quads += _wheels(body, eye, kw)
    if window is not None:
        quads.append(window)
    near = parts[0]
    for side in (-1, 1):
        lx = x + side * (near.width / 2 - 0.25)
        y0 = near.bottom + 0.4
        quads.append(Quad(2, z - 0.02, lx - 0.15, lx + 0.15, y0, y0 + 0.14, color=light_color,
                          texture="plain", emissive=lights_on, **kw))
    total = Cuboid(x, z, max(p.width for p in parts), 1.0, max(p.z + p.length for p in parts) - z)
    return Placed(quads, total.footprint(), casts_shadow=True)


def person(x: float, z: float, instance: int, rng: np.random.Generator, label: int = 24,
           base: float = 0.0, seated: bool = False) -> Placed:
    """A pedestrian (or, `seated`, a rider sitting at height `base`) as a camera-facing billboard."""
    s = rng.uniform(1.55, 1.95)
    kw = dict(label=label, instance=instance, texture="plain")
    shirt, trousers = tuple(rng.uniform(0.05, 0.9, 3)), tuple(rng.uniform(0.05, 0.5, 3))
    skin = tuple(np.array([0.85, 0.65, 0.5]) * rng.uniform(0.45, 1.0))
    hip = base + (0.25 * s if seated else 0.47 * s)
    stride = 0.0 if seated else rng.uniform(0.0, 0.12)
    shoulder = hip + 0.33 * s
    head = shoulder + 0.03 * s
    quads = [
        Quad(2, z, x - 0.17 - stride, x - 0.03, base, hip, color=trousers, **kw),
        Quad(2, z, x + 0.03, x + 0.17 + stride, base, hip, color=trousers, **kw),
        Quad(2, z, x - 0.21, x + 0.21, hip - 0.02, shoulder, color=shirt, **kw),
        Quad(2, z + 0.01, x - 0.28, x + 0.28, hip + 0.05, shoulder, color=shirt, **kw),
        Quad(2, z, x - 0.1, x + 0.1, head, head + 0.14 * s, color=skin, shape="ellipse", **kw),
    ]
    return Placed(quads, (x - 0.3, x + 0.3, z - 0.2, z + 0.3))


def bicycle(x: float, z: float, instance: int, rng: np.random.Generator, side_view: bool) -> Placed:
    """A bicycle seen from the side (parked, crossing) or from behind (ridden along the road)."""
    kw = dict(label=LABEL["bicycle"], instance=instance, texture="plain")
    frame = tuple(rng.uniform(0.1, 0.9, 3))
    if side_view:
        quads = [Quad(2, z, x - 0.9, x - 0.24, 0.0, 0.66, color=TYRE, shape="ellipse", **kw),
                 Quad(2, z, x + 0.24, x + 0.9, 0.0, 0.66, color=TYRE, shape="ellipse", **kw),
                 Quad(2, z - 0.01, x - 0.57, x + 0.57, 0.55, 0.62, color=frame, **kw),
                 Quad(2, z - 0.01, x - 0.1, x - 0.04, 0.33, 0.9, color=frame, **kw)]
        return Placed(quads, (x - 0.9, x + 0.9, z - 0.2, z + 0.2))
    quads = [Quad(2, z, x - 0.04, x + 0.04, 0.0, 0.66, color=TYRE, **kw),
             Quad(2, z + 0.01, x - 0.06, x + 0.06, 0.3, 0.95, color=frame, **kw),
             Quad(2, z + 0.9, x - 0.3, x + 0.3, 0.95, 1.0, color=frame, **kw)]
    return Placed(quads, (x - 0.3, x + 0.3, z - 0.2, z + 1.8))


def pole(x: float, z: float, rng: np.random.Generator, lights_on: bool) -> list[Quad]:
    """A pole, sometimes carrying a traffic sign or a traffic light facing the camera."""
    h = rng.uniform(3.5, 7.0)
    grey = tuple(np.full(3, rng.uniform(0.3, 0.6)))
    quads = [Quad(2, z, x - 0.08, x + 0.08, 0.0, h, label=LABEL["pole"], color=grey, texture="plain")]
    kind = rng.choice(["none", "sign", "light"], p=[0.35, 0.4, 0.25])
    if kind == "sign":
        y = rng.uniform(2.0, min(h - 0.3, 3.2))
        color = [(0.8, 0.1, 0.1), (0.1, 0.25, 0.7), (0.9, 0.8, 0.1), (0.9, 0.9, 0.9)][rng.integers(4)]
        shape = "ellipse" if rng.random() < 0.5 else "rect"
        quads.append(Quad(2, z - 0.05, x - 0.35, x + 0.35, y, y + 0.7, label=LABEL["traffic sign"],
                          color=color, texture="plain", shape=shape))
    elif kind == "light":
        y = h - 1.0
        quads.append(Quad(2, z - 0.05, x - 0.17, x + 0.17, y, y + 0.9, label=LABEL["traffic light"],
                          color=(0.08, 0.08, 0.08), texture="plain"))
        lamp = [(0.9, 0.1, 0.1), (0.95, 0.7, 0.1), (0.1, 0.85, 0.3)][rng.integers(3)]
        quads.append(Quad(2, z - 0.06, x - 0.1, x + 0.1, y + 0.6, y + 0.8, label=LABEL["traffic light"],
                          color=lamp, texture="plain", shape="ellipse", emissive=lights_on))
    return quads


def tree(x: float, z: float, rng: np.random.Generator) -> list[Quad]:
    """A street tree: a trunk and a crown, both vegetation, facing the camera."""
    crown_r, trunk_h = rng.uniform(1.0, 2.2), rng.uniform(1.8, 3.0)
    green = (rng.uniform(0.1, 0.25), rng.uniform(0.3, 0.5), rng.uniform(0.08, 0.2))
    kw = dict(label=LABEL["vegetation"], seed=int(rng.integers(1 << 16)))
    return [Quad(2, z, x - 0.15, x + 0.15, 0.0, trunk_h + 0.5, color=(0.3, 0.22, 0.15), texture="noise", **kw),
            Quad(2, z - 0.1, x - crown_r, x + crown_r, trunk_h, trunk_h + 2 * crown_r, color=green,
                 texture="foliage", shape="ellipse", **kw)]


def roadside(side: int, x: float, z0: float, z1: float, rng: np.random.Generator) -> list[Quad]:
    """One segment of what lines the street at lateral x between z0 and z1: a building
    (with a taller one set back behind it), a hedge or tree line, a wall or a fence."""
    kind = rng.choice(["building", "vegetation", "wall", "fence"], p=[0.6, 0.25, 0.07, 0.08])
    seed = int(rng.integers(1 << 16))
    if kind == "building":
        color = tuple(rng.uniform(0.35, 0.8) * np.array([1.0, rng.uniform(0.85, 1.0), rng.uniform(0.7, 1.0)]))
        return [Quad(0, x, z0, z1, 0.0, rng.uniform(6.0, 25.0), label=LABEL["building"], color=color,
                     texture="facade", seed=seed)]
    if kind == "vegetation":
        green = (rng.uniform(0.1, 0.3), rng.uniform(0.3, 0.5), rng.uniform(0.05, 0.2))
        h = rng.uniform(2.0, 9.0)
        return [Quad(0, x, z0, z1, 0.0, h, label=LABEL["vegetation"], color=green, texture="foliage",
                     shape="profile", roughness=min(h * 0.5, 3.0), seed=seed),
                Quad(0, x + side * 12.0, z0, z1, 0.0, rng.uniform(10.0, 30.0), label=LABEL["building"],
                     color=tuple(rng.uniform(0.4, 0.75, 3)), texture="facade", seed=seed + 1)]
    h = rng.uniform(1.0, 2.2)
    label = LABEL[str(kind)]
    color = (0.55, 0.52, 0.48) if kind == "wall" else (0.4, 0.38, 0.3)
    return [Quad(0, x, z0, z1, 0.0, h, label=label, color=color, texture="noise", seed=seed),
            Quad(0, x + side * 10.0, z0, z1, 0.0, rng.uniform(8.0, 30.0), label=LABEL["building"],
                 color=tuple(rng.uniform(0.4, 0.75, 3)), texture="facade", seed=seed + 1)]
