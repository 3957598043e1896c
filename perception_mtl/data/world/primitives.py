"""Geometric primitives of the driving world: axis-aligned planar patches ("quads").

Every surface in the world (facades, vehicle faces, people, poles, signs) is a bounded
patch of a plane x = c, y = c or z = c. That keeps ray casting exact and cheap: one
division per pixel gives the hit depth, two comparisons give the inside test.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# In-plane (u, v) axes for each plane normal axis: v is vertical for vertical planes.
PLANE_AXES = {0: (2, 1), 1: (0, 2), 2: (0, 1)}


@dataclass
class Quad:
    """A patch of the plane `axis` = `c`, covering u in [u0, u1] and v in [v0, v1].

    `shape` is "rect", "ellipse" (inscribed) or "profile" (the top edge v1 is lowered by
    up to `roughness` metres of smooth noise along u, for tree lines and hedges).
    `label` is a Cityscapes label id; `instance` is labelId*1000+k for things, 0 for stuff.
    """

    axis: int
    c: float
    u0: float
    u1: float
    v0: float
    v1: float
    label: int
    color: tuple[float, float, float]
    instance: int = 0
    texture: str = "noise"
    shape: str = "rect"
    roughness: float = 0.0
    emissive: bool = False
    seed: int = 0

    def corners(self) -> np.ndarray:
        """World coordinates (4, 3) of the patch's corners."""
        a, b = PLANE_AXES[self.axis]
        pts = np.zeros((4, 3))
        pts[:, self.axis] = self.c
        pts[:, a] = [self.u0, self.u1, self.u1, self.u0]
        pts[:, b] = [self.v0, self.v0, self.v1, self.v1]
        return pts


@dataclass
class Cuboid:
    """An axis-aligned box on the ground: centre x, nearest z, size (width, height, length).

    `bottom` lifts the box off the ground (a vehicle body above its wheels).
    """

    x: float
    z: float
    width: float
    height: float
    length: float
    bottom: float = 0.0

    def faces(self, eye: np.ndarray, **quad_kwargs) -> list[Quad]:
        """The faces that can be seen from `eye` (3,): back-face culling of a convex box."""
        x0, x1 = self.x - self.width / 2, self.x + self.width / 2
        y0, y1 = self.bottom, self.bottom + self.height
        z0, z1 = self.z, self.z + self.length
        faces = []
        if eye[2] < z0:
            faces.append(Quad(2, z0, x0, x1, y0, y1, **quad_kwargs))
        if eye[0] < x0:
            faces.append(Quad(0, x0, z0, z1, y0, y1, **quad_kwargs))
        elif eye[0] > x1:
            faces.append(Quad(0, x1, z0, z1, y0, y1, **quad_kwargs))
        if eye[1] > y1:
            faces.append(Quad(1, y1, x0, x1, z0, z1, **quad_kwargs))
        return faces

    def footprint(self, margin: float = 0.0) -> tuple[float, float, float, float]:
        """Ground rectangle (x0, x1, z0, z1) covered by the box, grown by `margin`."""
        w = self.width / 2 + margin
        return self.x - w, self.x + w, self.z - margin, self.z + self.length + margin


@dataclass
class Scene:
    """Everything needed to render one frame (besides the camera)."""

    quads: list[Quad]
    road_half_width: float
    sidewalk_width: float
    lane_width: float
    lanes: int
    shadows: list[tuple[float, float, float, float]] = field(default_factory=list)
    weather: str = "clear"
    time_of_day: str = "day"
    visibility: float = 2000.0
    sun: tuple[float, float, float] = (0.4, 0.8, -0.45)
    far_depth: float = 200.0
    palette: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    crosswalk: tuple[float, float] | None = None  # z range of a zebra crossing
    noise_sigma: float = 0.01
    exposure: float = 1.0
    seed: int = 0
