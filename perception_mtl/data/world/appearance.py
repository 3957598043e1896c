"""Materials, lighting, time of day and weather of the driving world.

Fog follows Koschmieder's law, I = J * exp(-beta * z) + A * (1 - exp(-beta * z)) with
beta = 3.912 / visibility, so image contrast is a function of the true depth z.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from perception_mtl.data.world.primitives import Quad, Scene

ROAD, SIDEWALK = 7, 8


def _make_noise(size: int = 256, seed: int = 1234) -> np.ndarray:
    """Tileable fractal noise (size, size) in [0, 1]: white noise with a 1/f^1.5 spectrum."""
    rng = np.random.default_rng(seed)
    f = np.fft.fftfreq(size)
    radius = np.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    radius[0, 0] = 1.0
    spectrum = np.fft.fft2(rng.standard_normal((size, size))) / radius**1.5
    spectrum[0, 0] = 0.0
    noise = np.real(np.fft.ifft2(spectrum))
    noise = (noise - noise.min()) / (noise.max() - noise.min())
    return noise.astype(np.float32)


NOISE = _make_noise()
_MASK = NOISE.shape[0] - 1
_SENSOR_MARGIN = 64


@lru_cache(maxsize=4)
def _sensor_noise_bank(height: int, width: int) -> np.ndarray:
    """Unit Gaussian noise (H + 64, W + 64, 3); each frame reads a randomly offset window."""
    rng = np.random.default_rng(4321)
    shape = (height + _SENSOR_MARGIN, width + _SENSOR_MARGIN, 3)
    return rng.standard_normal(shape, dtype=np.float32)


def sample_noise(u: np.ndarray, v: np.ndarray, texels_per_metre: float, seed: int = 0) -> np.ndarray:
    """Look up the noise bank at world-anchored coordinates, so texture moves with geometry."""
    iu = (np.floor(u * texels_per_metre).astype(np.int64) + seed * 37) & _MASK
    iv = (np.floor(v * texels_per_metre).astype(np.int64) + seed * 91) & _MASK
    return NOISE[iv, iu]


def profile_noise(u: np.ndarray, seed: int) -> np.ndarray:
    """Smooth 1-D noise in [0, 1] along u (metres), for ragged tops of trees and hedges."""
    return sample_noise(u, np.full_like(u, 0.0), 1.5, seed)


def _windows(u: np.ndarray, v: np.ndarray, pitch_u: float, pitch_v: float, v_min: float) -> np.ndarray:
    """Boolean mask of a regular window grid on a facade (u, v in metres)."""
    fu, fv = np.mod(u, pitch_u) / pitch_u, np.mod(v, pitch_v) / pitch_v
    return (fu > 0.25) & (fu < 0.75) & (fv > 0.3) & (fv < 0.75) & (v > v_min)


def quad_albedo(quad: Quad, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Surface colour (N, 3) of `quad` at in-plane coordinates u, v (N,)."""
    base = np.asarray(quad.color, np.float32)[None, :]
    if quad.texture == "plain":
        return np.repeat(base, len(u), 0)
    if quad.texture == "foliage":
        n = sample_noise(u, v, 6.0, quad.seed)
        return base * (0.55 + 0.9 * n[:, None])
    shade = (0.85 + 0.3 * sample_noise(u, v, 4.0, quad.seed))[:, None]
    color = base * shade
    if quad.texture == "facade":
        glass = _windows(u, v, 3.0, 3.3, 2.5)
        color[glass] = np.array([0.16, 0.19, 0.24], np.float32) * shade[glass]
    elif quad.texture == "bus":
        glass = (v > 1.5) & (v < 2.6)
        color[glass] = np.array([0.1, 0.12, 0.15], np.float32)
    return color


def ground_albedo(x: np.ndarray, z: np.ndarray, labels: np.ndarray, scene: Scene) -> np.ndarray:
    """Colour (..., 3) of the ground at world points (x, z) with label ids `labels` (...)."""
    pal = scene.palette
    n = sample_noise(x, z, 8.0, scene.seed)[..., None]
    road = np.asarray(pal.get("road", (0.33, 0.33, 0.34)), np.float32) * (0.8 + 0.4 * n)
    walk = np.asarray(pal.get("sidewalk", (0.58, 0.56, 0.52)), np.float32) * (0.9 + 0.2 * n)
    grass = np.asarray(pal.get("terrain", (0.36, 0.44, 0.2)), np.float32) * (0.6 + 0.8 * n)
    tiles = (np.mod(x, 0.6) < 0.04) | (np.mod(z, 0.6) < 0.04)
    walk[tiles] *= 0.8
    color = np.where((labels == ROAD)[..., None], road, np.where((labels == SIDEWALK)[..., None], walk, grass))
    paint = _lane_paint(x, z, scene)
    color[paint] = np.array([0.86, 0.86, 0.82], np.float32) * (0.9 + 0.1 * n[paint])
    for x0, x1, z0, z1 in scene.shadows:
        under = (x >= x0) & (x <= x1) & (z >= z0) & (z <= z1)
        color[under] *= 0.4
    return color


def _lane_paint(x: np.ndarray, z: np.ndarray, scene: Scene) -> np.ndarray:
    """Boolean mask (...) of painted lane lines, edge lines and an optional zebra crossing."""
    rh, half_line = scene.road_half_width, 0.07
    paint = np.abs(np.abs(x) - (rh - 0.25)) < half_line
    dashed = np.mod(z, 10.0) < 3.5
    for k in range(1, scene.lanes):
        paint |= (np.abs(x - (-rh + k * scene.lane_width)) < half_line) & dashed
    if scene.crosswalk is not None:
        z0, z1 = scene.crosswalk
        paint |= (z >= z0) & (z <= z1) & (np.mod(x, 1.0) < 0.5) & (np.abs(x) < rh)
    return paint


_LIGHTING = {  # ambient, sun strength, sun tint, sky top, sky horizon
    "day": (0.5, 0.6, (1.0, 0.98, 0.92), (0.35, 0.55, 0.9), (0.75, 0.85, 0.95)),
    "dusk": (0.3, 0.45, (1.0, 0.7, 0.45), (0.3, 0.3, 0.55), (0.95, 0.6, 0.4)),
    "night": (0.06, 0.0, (1.0, 1.0, 1.0), (0.01, 0.02, 0.06), (0.06, 0.07, 0.12)),
}


def shade(
    albedo: np.ndarray,
    normal_axis: np.ndarray,
    emissive: np.ndarray,
    depth: np.ndarray,
    rays: np.ndarray,
    scene: Scene,
) -> np.ndarray:
    """Light, fog and sensor noise. albedo (H, W, 3), normal_axis/emissive/depth (H, W),
    rays (3, H, W) -> image (H, W, 3) uint8."""
    ambient, sun, tint, sky_top, sky_horizon = _LIGHTING[scene.time_of_day]
    if scene.weather != "clear":  # overcast: flat light
        ambient, sun = ambient * 1.1, sun * 0.25
        sky_top = sky_horizon = tuple(0.8 * c + 0.2 * max(sky_horizon) for c in sky_horizon)
    sun_dir = np.asarray(scene.sun) / np.linalg.norm(scene.sun)
    # light per (normal axis, which side faces the camera): a 6-entry table, plus sky
    lut = np.zeros(7, np.float32)
    for axis in range(3):
        for positive_ray in (0, 1):
            lut[2 * axis + positive_ray] = ambient + sun * max(0.0, (1 - 2 * positive_ray) * sun_dir[axis])
    facing = np.choose(np.clip(normal_axis, 0, 2), rays > 0)
    light = lut[np.where(normal_axis >= 0, 2 * normal_axis + facing, 6)]
    color = albedo * light[..., None] * np.asarray(tint, np.float32)
    if scene.time_of_day == "night":  # the ego car's headlights light the road ahead
        lit = (normal_axis >= 0) & np.isfinite(depth)
        color[lit] += albedo[lit] * (0.9 * np.exp(-depth[lit] / 18.0))[:, None].astype(np.float32)
    color[emissive] = albedo[emissive]
    sky = normal_axis < 0
    elevation = np.clip(rays[1][sky] / np.linalg.norm(rays[:, sky], axis=0) * 4, 0, 1)[:, None]
    color[sky] = (1 - elevation) * np.asarray(sky_horizon) + elevation * np.asarray(sky_top)
    beta = 3.912 / scene.visibility
    transmission = np.exp(-beta * np.minimum(depth, 1e6).astype(np.float32))[..., None]
    airlight = np.asarray(sky_horizon, np.float32)
    color = color * transmission + airlight * (1 - transmission)
    color = color * scene.exposure
    rng = np.random.default_rng(scene.seed + 7)
    if scene.weather == "rain":
        _add_rain(color, rng)
    h, w = depth.shape
    di, dj = rng.integers(0, _SENSOR_MARGIN, 2)
    color += scene.noise_sigma * _sensor_noise_bank(h, w)[di : di + h, dj : dj + w]
    return (np.clip(color, 0.0, 1.0) * 255 + 0.5).astype(np.uint8)


def _add_rain(color: np.ndarray, rng: np.random.Generator, streaks: int = 350, length: int = 10) -> None:
    """Brighten short slanted streaks in place; color (H, W, 3)."""
    h, w = color.shape[:2]
    rows = rng.integers(0, h, streaks)[:, None] + np.arange(length)[None, :]
    cols = rng.integers(0, w, streaks)[:, None] + (np.arange(length)[None, :] // 4)
    keep = (rows < h) & (cols < w)
    color[rows[keep], cols[keep]] += 0.18
