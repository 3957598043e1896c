"""Random street layouts: road, roadside, street furniture, traffic, camera, weather.

`difficulty` in [0, 1] scales what makes frames hard: camera jitter, fog and rain
frequency and density, night frames, sensor noise, object range and crowding.
"""
from __future__ import annotations

import numpy as np

from perception_mtl.data.world import objects
from perception_mtl.data.world.camera import Camera
from perception_mtl.data.world.primitives import Quad, Scene

WEATHERS = ("clear", "fog", "rain")
TIMES = ("day", "dusk", "night")
THING_CLASSES = ("car", "truck", "bus", "person", "rider", "bicycle")
THING_PROBS = (0.42, 0.08, 0.06, 0.26, 0.11, 0.07)


def sample_camera(rng: np.random.Generator, height: int, width: int, difficulty: float, x: float) -> Camera:
    """A Cityscapes-like camera at lateral position x with jittered height, pitch and yaw."""
    jitter = 0.5 + difficulty
    return Camera.for_size(
        height, width,
        cam_height=float(np.clip(rng.normal(1.5, 0.12 * jitter), 1.1, 1.9)),
        pitch=float(np.clip(rng.normal(0.035, 0.015 * jitter), -0.02, 0.1)),
        yaw=float(rng.normal(0.0, 0.02 * jitter)),
        x_offset=x,
    )


def _weather(rng: np.random.Generator, difficulty: float) -> tuple[str, str, float]:
    """Weather, time of day and meteorological visibility in metres."""
    bad = 0.15 + 0.35 * difficulty
    weather = rng.choice(WEATHERS, p=[1 - bad, bad / 2, bad / 2])
    time = rng.choice(TIMES, p=[0.7 - 0.2 * difficulty, 0.15 + 0.1 * difficulty, 0.15 + 0.1 * difficulty])
    visibility = {"clear": rng.uniform(1500, 5000), "rain": rng.uniform(250, 700),
                  "fog": rng.uniform(150 - 100 * difficulty, 250 - 100 * difficulty)}[str(weather)]
    return str(weather), str(time), float(visibility)


def _street(rng: np.random.Generator, rh: float, sw: float, lights_on: bool, far: float) -> list[Quad]:
    """Roadside segments on both sides, poles and trees along the kerbs, maybe a street end."""
    quads: list[Quad] = []
    for side in (-1, 1):
        x = side * (rh + sw + rng.uniform(0.0, 3.0))
        z = -5.0
        while z < far:
            length = rng.uniform(8.0, 35.0)
            quads += objects.roadside(side, x, z, z + length, rng)
            z += length
        z = rng.uniform(3.0, 20.0)
        while z < 120.0:
            quads += objects.pole(side * (rh + 0.4), z, rng, lights_on)
            z += rng.uniform(12.0, 40.0)
        z = rng.uniform(5.0, 30.0)
        while rng.random() < 0.5 and z < 100.0:
            quads += objects.tree(side * (rh + sw * 0.6), z, rng)
            z += rng.uniform(8.0, 20.0)
    if rng.random() < 0.4:  # the street ends at a cross building
        zend = rng.uniform(60.0, 180.0)
        quads.append(Quad(2, zend, -80.0, 80.0, 0.0, rng.uniform(10.0, 35.0), label=objects.LABEL["building"],
                          color=tuple(rng.uniform(0.4, 0.8, 3)), texture="facade", seed=int(rng.integers(1 << 16))))
    return quads


def _overlaps(box: tuple[float, float, float, float], taken: list[tuple[float, float, float, float]]) -> bool:
    x0, x1, z0, z1 = box
    return any(x0 < b[1] + 0.3 and b[0] < x1 + 0.3 and z0 < b[3] + 0.3 and b[2] < z1 + 0.3 for b in taken)


def _place(kind: str, rng: np.random.Generator, rh: float, sw: float, lw: float, lanes: int,
           difficulty: float) -> tuple[float, float, str]:
    """Lateral position, depth and a pose tag for one object of class `kind`."""
    zmax = 40.0 + 40.0 * difficulty
    if kind in ("car", "truck", "bus"):
        if rng.random() < 0.25:  # parked at the kerb
            return float(rng.choice([-1, 1]) * (rh - 1.2)), float(rng.uniform(4.0, zmax)), "parked"
        lane = int(rng.integers(lanes))
        x = -rh + lw * (lane + 0.5) + rng.normal(0, 0.25)
        return float(x), float(rng.uniform(5.0, zmax)), "oncoming" if lane < lanes // 2 else "ahead"
    if kind == "person":
        if rng.random() < 0.25:
            return float(rng.uniform(-rh, rh)), float(rng.uniform(4.0, zmax * 0.7)), "crossing"
        return float(rng.choice([-1, 1]) * (rh + rng.uniform(0.3, sw))), float(rng.uniform(3.0, zmax * 0.7)), "walk"
    if kind == "rider":
        return float(rng.choice([-1, 1]) * (rh - 0.9)), float(rng.uniform(4.0, zmax * 0.7)), "ride"
    return float(rng.choice([-1, 1]) * (rh + rng.uniform(0.5, sw))), float(rng.uniform(3.0, zmax * 0.6)), "parked"


def _traffic(rng: np.random.Generator, eye: np.ndarray, rh: float, sw: float, lw: float, lanes: int,
             difficulty: float, max_objects: int, lights_on: bool) -> tuple[list[Quad], list]:
    """Up to `max_objects` non-overlapping things, with instance ids labelId*1000+k."""
    counters: dict[int, int] = {}

    def instance(label: int) -> int:
        counters[label] = counters.get(label, -1) + 1
        return label * 1000 + counters[label]

    taken = [(eye[0] - 1.5, eye[0] + 1.5, -5.0, 3.0)]  # the ego vehicle's own space
    quads, shadows = [], []
    for _ in range(int(rng.integers(0, max_objects + 1))):
        kind = str(rng.choice(THING_CLASSES, p=THING_PROBS))
        for _try in range(10):
            x, z, pose = _place(kind, rng, rh, sw, lw, lanes, difficulty)
            if kind in ("car", "truck", "bus"):
                placed = [objects.vehicle(kind, x, z, eye, instance(objects.LABEL[kind]), rng,
                                          pose == "oncoming", lights_on)]
            elif kind == "person":
                placed = [objects.person(x, z, instance(24), rng)]
            elif kind == "rider":
                placed = [objects.bicycle(x, z, instance(33), rng, side_view=False),
                          objects.person(x, z + 0.5, instance(25), rng, label=25, base=0.55, seated=True)]
            else:
                placed = [objects.bicycle(x, z, instance(33), rng, side_view=True)]
            if not any(_overlaps(p.footprint, taken) for p in placed):
                break
            for p in placed:  # give the ids back and try another spot
                counters[p.quads[0].label] -= 1
            placed = []
        for p in placed:
            taken.append(p.footprint)
            quads += p.quads
            if p.casts_shadow:
                x0, x1, z0, z1 = p.footprint
                shadows.append((x0 - 0.1, x1 + 0.1, z0 - 0.1, z1 + 0.1))
    return quads, shadows


def sample_scene(rng: np.random.Generator, height: int = 256, width: int = 512,
                 difficulty: float = 0.5, max_objects: int = 15) -> tuple[Scene, Camera]:
    """Draw one street scene and the camera that looks at it."""
    lanes = int(rng.integers(2, 5))
    lw = float(rng.uniform(3.0, 3.6))
    rh, sw = lanes * lw / 2, float(rng.uniform(2.0, 4.5))
    ego_lane = int(rng.integers(lanes // 2, lanes)) if rng.random() < 0.8 else int(rng.integers(lanes))
    camera = sample_camera(rng, height, width, difficulty, -rh + lw * (ego_lane + 0.5) + rng.normal(0, 0.3))
    weather, time, visibility = _weather(rng, difficulty)
    lights_on = time == "night"
    far = 220.0
    quads = _street(rng, rh, sw, lights_on, far)
    things, shadows = _traffic(rng, camera.origin, rh, sw, lw, lanes, difficulty, max_objects, lights_on)
    sun = (float(rng.uniform(-1, 1)), float(rng.uniform(0.3, 1.0)), float(rng.uniform(-1, 0.3)))
    scene = Scene(
        quads=quads + things, road_half_width=rh, sidewalk_width=sw, lane_width=lw, lanes=lanes,
        shadows=shadows, weather=weather, time_of_day=time, visibility=visibility, sun=sun,
        far_depth=far - 20.0,
        palette={"road": tuple(np.full(3, rng.uniform(0.22, 0.42)) + rng.uniform(-0.02, 0.02, 3)),
                 "sidewalk": tuple(rng.uniform(0.45, 0.7) * np.array([1.0, 0.97, 0.9])),
                 "terrain": (rng.uniform(0.25, 0.45), rng.uniform(0.35, 0.5), rng.uniform(0.1, 0.25))},
        crosswalk=(lambda z: (z, z + 3.0))(float(rng.uniform(8.0, 30.0))) if rng.random() < 0.25 else None,
        noise_sigma=float(0.004 + 0.02 * difficulty * rng.random()),
        exposure=float(rng.uniform(0.85, 1.15)),
        seed=int(rng.integers(1 << 30)),
    )
    return scene, camera
