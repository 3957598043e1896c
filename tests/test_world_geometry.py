"""The renderer against geometry computed by hand."""
from __future__ import annotations

import numpy as np

from perception_mtl.data.world.appearance import shade
from perception_mtl.data.world.camera import Camera
from perception_mtl.data.world.primitives import Cuboid, Scene
from perception_mtl.data.world.render import render

H, W = 128, 256


def one_car_scene(x: float, z: float, width: float = 1.8, height: float = 1.5, length: float = 4.5):
    camera = Camera.for_size(H, W, cam_height=1.2, pitch=0.0, yaw=0.0)
    car = Cuboid(x, z, width, height, length)
    quads = car.faces(camera.origin, label=26, color=(0.6, 0.1, 0.1), instance=26000)
    scene = Scene(quads=quads, road_half_width=5.0, sidewalk_width=2.0, lane_width=3.3, lanes=3)
    return scene, camera


def test_single_car_box_and_depth_match_projection():
    z, width, height = 12.0, 1.8, 1.5
    scene, cam = one_car_scene(0.0, z, width, height)
    frame = render(scene, cam)
    mask = frame.instances == 26000
    rows, cols = np.nonzero(mask)
    box = (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)
    # camera below the roof and centred: only the rear face is visible, a rectangle at depth z
    expected = (cam.u0 - cam.fx * width / 2 / z, cam.v0 - cam.fy * (height - 1.2) / z,
                cam.u0 + cam.fx * width / 2 / z, cam.v0 + cam.fy * 1.2 / z)
    assert np.allclose(box, expected, atol=1.0), (box, expected)
    assert np.allclose(frame.depth[mask], z, rtol=1e-5)
    assert set(np.unique(frame.labels[mask])) == {26}


def test_side_face_depth_follows_its_plane():
    scene, cam = one_car_scene(4.0, 10.0)  # car to the right: its left side (x = 3.1) is visible
    frame = render(scene, cam)
    mask = frame.instances == 26000
    side = mask & (frame.depth > 10.01)
    assert side.sum() > 20
    u = np.nonzero(side)[1] + 0.5
    assert np.allclose(frame.depth[side], 3.1 * cam.fx / (u - cam.u0), rtol=1e-4)
    rear = mask & ~side
    assert np.allclose(frame.depth[rear], 10.0, rtol=1e-5)
    assert np.nonzero(side)[1].max() < np.nonzero(rear)[1].min() + 1  # the side lies towards the centre


def test_road_pixels_obey_flat_ground_geometry():
    cam = Camera.for_size(H, W, cam_height=1.4, pitch=0.05, yaw=0.02)
    scene = Scene(quads=[], road_half_width=50.0, sidewalk_width=2.0, lane_width=3.3, lanes=3)
    frame = render(scene, cam)
    v = np.arange(H)[:, None] + 0.5
    # a ground point at depth z lies 1.4 m below the camera: solve the pitched pinhole for z
    b = (v - cam.v0) / cam.fy
    expected = cam.cam_height / (b * np.cos(cam.pitch) + np.sin(cam.pitch))
    road = (frame.labels == 7) & (frame.depth > 0)
    assert road.sum() > H * W * 0.3
    assert np.allclose(frame.depth[road], np.broadcast_to(expected, (H, W))[road], rtol=1e-4)


def test_fog_pulls_far_pixels_towards_the_airlight():
    albedo = np.full((1, 2, 3), 0.2, np.float32)
    depth = np.array([[5.0, 80.0]], np.float32)
    rays = np.stack([np.zeros((1, 2)), np.full((1, 2), -0.1), np.ones((1, 2))]).astype(np.float32)
    base = dict(quads=[], road_half_width=5.0, sidewalk_width=2.0, lane_width=3.3, lanes=3, noise_sigma=0.0)
    clear = shade(albedo, np.ones((1, 2), np.int8), np.zeros((1, 2), bool), depth, rays,
                  Scene(weather="clear", visibility=1e6, **base)).astype(float)
    fog = shade(albedo, np.ones((1, 2), np.int8), np.zeros((1, 2), bool), depth, rays,
                Scene(weather="fog", visibility=60.0, **base)).astype(float)
    assert np.allclose(clear[0, 0], clear[0, 1], atol=1)  # no fog: depth does not matter
    near_shift, far_shift = np.abs(fog[0, 0] - clear[0, 0]).sum(), np.abs(fog[0, 1] - clear[0, 1]).sum()
    assert far_shift > 2 * near_shift
