"""Pinhole camera over a flat ground plane, with Cityscapes' camera JSON fields.

World frame: x right, y up, z forward; the ground is y = 0 and the camera sits at
(x_offset, height, 0). Camera frame: x right, y down, z along the optical axis.
A pixel's ray is written with a camera-frame z component of 1, so the ray parameter
at a hit point *is* the depth along the optical axis (what Cityscapes disparity encodes).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

# Cityscapes' stereo rig: baseline in metres, focal length in pixels at 2048 px width.
CITYSCAPES_BASELINE = 0.209313
CITYSCAPES_FX_2048 = 2262.52


@dataclass(frozen=True)
class Camera:
    """Intrinsics in pixels for an image of `height` x `width`; extrinsics in metres/radians.

    `pitch` > 0 looks down (Cityscapes' convention); `yaw` > 0 turns right.
    Pixel (row i, col j) has its centre at (u, v) = (j + 0.5, i + 0.5).
    """

    width: int = 512
    height: int = 256
    fx: float = CITYSCAPES_FX_2048 * 512 / 2048
    fy: float = CITYSCAPES_FX_2048 * 512 / 2048
    u0: float = 256.0
    v0: float = 128.0
    cam_height: float = 1.5
    pitch: float = 0.03
    yaw: float = 0.0
    x_offset: float = 0.0
    baseline: float = CITYSCAPES_BASELINE

    @classmethod
    def for_size(cls, height: int, width: int, **extrinsics: float) -> "Camera":
        """Cityscapes-like field of view scaled to an image of `height` x `width`."""
        f = CITYSCAPES_FX_2048 * width / 2048
        return cls(width=width, height=height, fx=f, fy=f, u0=width / 2, v0=height / 2, **extrinsics)

    @property
    def origin(self) -> np.ndarray:
        """Camera centre in world coordinates, shape (3,)."""
        return np.array([self.x_offset, self.cam_height, 0.0])

    @cached_property
    def rotation(self) -> np.ndarray:
        """Matrix R (3, 3) whose columns are the camera's x, y, z axes in world coordinates."""
        cp, sp, cy, sy = np.cos(self.pitch), np.sin(self.pitch), np.cos(self.yaw), np.sin(self.yaw)
        x_axis = np.array([cy, 0.0, -sy])
        z_axis = np.array([sy * cp, -sp, cy * cp])
        y_axis = np.cross(x_axis, z_axis)  # points down in the image
        return np.stack([x_axis, y_axis, z_axis], axis=1)

    def rays(self) -> np.ndarray:
        """World-frame ray directions (3, H, W) with unit camera-frame z component."""
        v, u = np.mgrid[0 : self.height, 0 : self.width].astype(np.float64) + 0.5
        cam = np.stack([(u - self.u0) / self.fx, (v - self.v0) / self.fy, np.ones_like(u)])
        return np.einsum("ij,jhw->ihw", self.rotation, cam)

    def project(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """World points (N, 3) -> pixel coordinates (N, 2) as (u, v) and depth (N,)."""
        cam = (points - self.origin) @ self.rotation
        z = cam[:, 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            uv = np.stack([self.u0 + self.fx * cam[:, 0] / z, self.v0 + self.fy * cam[:, 1] / z], 1)
        return uv, z

    def to_cityscapes_json(self) -> dict:
        """The camera in Cityscapes' `camera/*_camera.json` fields (intrinsics of the stored size)."""
        return {
            "extrinsic": {
                "baseline": self.baseline,
                "pitch": self.pitch,
                "roll": 0.0,
                "yaw": self.yaw,
                "x": 0.0,
                "y": -self.x_offset,  # Cityscapes' vehicle frame has y pointing left
                "z": self.cam_height,
            },
            "intrinsic": {"fx": self.fx, "fy": self.fy, "u0": self.u0, "v0": self.v0},
        }
