"""Exact ray casting of a `Scene`: per-pixel depth, labels, instances and albedo.

Written by hand because no maintained library renders labelled driving scenes from
numpy alone; it is a z-buffer over analytic plane intersections, so depth, semantics,
instances and boxes agree with each other by construction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from perception_mtl.data.world import appearance
from perception_mtl.data.world.camera import Camera
from perception_mtl.data.world.primitives import PLANE_AXES, Quad, Scene

SKY, ROAD, SIDEWALK, TERRAIN = 23, 7, 8, 22
NEAREST_VISIBLE_Z = 0.5  # metres; quads are clipped to z >= this for their screen window


@dataclass
class Frame:
    """One rendered frame. Shapes: image (H, W, 3) uint8, labels (H, W) uint8 label ids,
    instances (H, W) int32 (labelId*1000+k for things, label id for stuff), depth (H, W)
    float32 metres along the optical axis, 0 where invalid (sky, beyond `far_depth`), normals
    (H, W, 3) float32 unit surface normals facing the camera, in its frame (x right, y down,
    z forward), 0 where depth is invalid."""

    image: np.ndarray
    labels: np.ndarray
    instances: np.ndarray
    depth: np.ndarray
    normals: np.ndarray
    camera: Camera
    scene: Scene


class _Buffers:
    """The z-buffer and per-pixel surface attributes filled by the geometry pass."""

    def __init__(self, h: int, w: int):
        self.depth = np.full((h, w), np.inf, np.float32)
        self.labels = np.full((h, w), SKY, np.uint8)
        self.instances = np.zeros((h, w), np.int32)
        self.albedo = np.zeros((h, w, 3), np.float32)
        self.normal_axis = np.full((h, w), -1, np.int8)  # -1: sky
        self.emissive = np.zeros((h, w), bool)


def render(scene: Scene, camera: Camera) -> Frame:
    """Ray-cast `scene` through `camera` and shade it (see `appearance.shade`)."""
    rays = camera.rays().astype(np.float32)
    eye = camera.origin.tolist()
    buf = _Buffers(camera.height, camera.width)
    _draw_ground(scene, rays, eye, buf)
    for quad, window in zip(scene.quads, _screen_windows(scene.quads, camera)):
        if window is not None:
            _draw_quad(quad, window, rays, eye, buf)
    instances = np.where(buf.instances > 0, buf.instances, buf.labels.astype(np.int32))
    valid = np.isfinite(buf.depth) & (buf.depth <= scene.far_depth)
    depth = np.where(valid, buf.depth, 0.0).astype(np.float32)
    image = appearance.shade(buf.albedo, buf.normal_axis, buf.emissive, buf.depth, rays, scene)
    normals = camera_normals(buf.normal_axis, rays, camera) * valid[..., None]
    return Frame(image, buf.labels, instances.astype(np.int32), depth, normals.astype(np.float32), camera, scene)


def camera_normals(normal_axis: np.ndarray, rays: np.ndarray, camera: Camera) -> np.ndarray:
    """Exact normals (H, W, 3) in the camera frame of surfaces whose normal is world axis
    `normal_axis` (H, W) (every surface is an axis-aligned plane; -1 = sky, gets 0), oriented
    against the world rays (3, H, W): n_cam = R^T (s e_a) = s R[a], s = -sign(ray_a)."""
    axis = np.clip(normal_axis, 0, 2).astype(np.int64)
    ray_along = np.take_along_axis(rays, axis[None], 0)[0]
    sign = np.where(ray_along > 0, -1.0, 1.0)
    normals = camera.rotation[axis] * sign[..., None]
    return np.where((normal_axis >= 0)[..., None], normals, 0.0)


def _draw_ground(scene: Scene, rays: np.ndarray, eye: list[float], buf: _Buffers) -> None:
    """Intersect every downward ray with y = 0 and classify the hit by lateral position.
    Without roll a ray's height component depends on its row only, so the ground is a
    block of rows below the horizon (plus, at most, part of the horizon row)."""
    below = np.nonzero(rays[1, :, 0] < -1e-6)[0]
    if below.size == 0:
        return
    rows = slice(int(below[0]), None)
    down = -rays[1, rows]
    t = eye[1] / down
    x = eye[0] + t * rays[0, rows]
    z = eye[2] + t * rays[2, rows]
    ax = np.abs(x)
    labels = np.where(
        ax <= scene.road_half_width,
        ROAD,
        np.where(ax <= scene.road_half_width + scene.sidewalk_width, SIDEWALK, TERRAIN),
    ).astype(np.uint8)
    buf.depth[rows] = t
    buf.labels[rows] = labels
    buf.albedo[rows] = appearance.ground_albedo(x, z, labels, scene)
    buf.normal_axis[rows] = 1


def _screen_windows(quads: list[Quad], camera: Camera) -> list[tuple[int, int, int, int] | None]:
    """Pixel rows/cols (i0, i1, j0, j1) that can see each quad, or None when none can."""
    if not quads:
        return []
    corners = np.concatenate([q.corners() for q in quads])
    corners[:, 2] = np.maximum(corners[:, 2], NEAREST_VISIBLE_Z)
    uv, z = camera.project(corners)
    uv, z = uv.reshape(-1, 4, 2), z.reshape(-1, 4)
    windows = []
    for quad_uv, quad_z in zip(uv, z):
        if np.all(quad_z <= 0):
            windows.append(None)
            continue
        if np.any(quad_z <= 1e-3):
            windows.append((0, camera.height, 0, camera.width))
            continue
        j0, i0 = np.floor(quad_uv.min(0)).astype(int) - 1
        j1, i1 = np.ceil(quad_uv.max(0)).astype(int) + 1
        i0, i1 = max(i0, 0), min(i1, camera.height)
        j0, j1 = max(j0, 0), min(j1, camera.width)
        windows.append((i0, i1, j0, j1) if i0 < i1 and j0 < j1 else None)
    return windows


def _draw_quad(quad: Quad, window: tuple[int, int, int, int], rays: np.ndarray, eye: list[float],
               buf: _Buffers) -> None:
    """Z-buffered rasterisation of one patch inside its screen `window` by exact ray-plane
    intersection; rays (3, H, W) in world coordinates, eye the camera centre."""
    i0, i1, j0, j1 = window
    r = rays[:, i0:i1, j0:j1]
    a, b = PLANE_AXES[quad.axis]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (quad.c - eye[quad.axis]) / r[quad.axis]
    u = eye[a] + t * r[a]
    v = eye[b] + t * r[b]
    inside = (t > 0) & (u >= quad.u0) & (u <= quad.u1) & (v >= quad.v0) & (v <= quad.v1)
    if quad.shape == "ellipse":
        cu, cv = (quad.u0 + quad.u1) / 2, (quad.v0 + quad.v1) / 2
        ru, rv = (quad.u1 - quad.u0) / 2, (quad.v1 - quad.v0) / 2
        inside &= ((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2 <= 1.0
    elif quad.shape == "profile":
        inside &= v <= quad.v1 - quad.roughness * appearance.profile_noise(u, quad.seed)
    zbuf = buf.depth[i0:i1, j0:j1]
    win = inside & (t < zbuf)
    if not win.any():
        return
    zbuf[win] = t[win]
    buf.labels[i0:i1, j0:j1][win] = quad.label
    buf.instances[i0:i1, j0:j1][win] = quad.instance
    buf.albedo[i0:i1, j0:j1][win] = appearance.quad_albedo(quad, u[win], v[win])
    buf.normal_axis[i0:i1, j0:j1][win] = quad.axis
    buf.emissive[i0:i1, j0:j1][win] = quad.emissive
