"""tools/predict.py on the tiny world's frames: a folder of images of different sizes and formats,
a video made from them, raw outputs in evaluate.py's formats, the ONNX path, and clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from helpers import tool_main


@pytest.fixture(scope="module")
def world_images(tiny_world) -> list[Path]:
    return sorted((tiny_world / "leftImg8bit" / "val").rglob("*_leftImg8bit.png"))


def test_folder_of_images_of_any_size(tiny_checkpoint, world_images, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    first = Image.open(world_images[0])
    first.save(folder / "a.png")
    first.resize((200, 90)).convert("RGB").save(folder / "b.jpg")  # another size and format
    (folder / "notes.txt").write_text("not an image: skipped")
    tool_main("predict")(["--checkpoint", str(tiny_checkpoint), "--input", str(folder), "--out", str(tmp_path / "out"),
                      "--raw"])
    out = tmp_path / "out"
    assert sorted(p.name for p in (out / "overlays").iterdir()) == ["a.png", "b.png"]
    overlay = np.asarray(Image.open(out / "overlays" / "a.png"))
    assert overlay.ndim == 3 and overlay.shape[1] > 3 * first.width and overlay.std() > 10
    # raw predictions at each frame's own size, in evaluate.py's formats
    assert Image.open(out / "raw" / "semantic" / "b.png").size == (200, 90)
    depth = np.asarray(Image.open(out / "raw" / "depth" / "a.png"))
    assert depth.dtype == np.uint16 and depth.shape == (first.height, first.width) and depth.min() > 0
    images = json.loads((out / "raw" / "detections_gt.json").read_text())["images"]
    assert [i["file_name"] for i in images] == ["a", "b"] and images[1]["width"] == 200
    results = json.loads((out / "raw" / "detections.json").read_text())
    assert all(r["image_id"] in (1, 2) and len(r["bbox"]) == 4 for r in results)
    assert "2 frames" in capsys.readouterr().out


def test_video_made_from_world_frames(tiny_checkpoint, world_images, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for path in world_images:
        Image.open(path).save(frames / path.name)
    tool_main("make_video")(["--frames", str(frames), "--out", str(tmp_path / "clip.mp4"), "--fps", "4"])
    tool_main("predict")(["--checkpoint", str(tiny_checkpoint), "--input", str(tmp_path / "clip.mp4"),
                      "--out", str(tmp_path / "out")])
    n = len(world_images)
    assert sorted(p.name for p in (tmp_path / "out" / "overlays").iterdir()) == [f"clip_{i:06d}.png" for i in range(n)]
    video = cv2.VideoCapture(str(tmp_path / "out" / "clip_overlay.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == n and video.get(cv2.CAP_PROP_FPS) == pytest.approx(4)
    ok, frame = video.read()
    video.release()
    first = np.asarray(Image.open(tmp_path / "out" / "overlays" / "clip_000000.png"))
    assert ok and frame.shape == first.shape


def test_onnx_graph_gives_the_same_overlays_input(tiny_checkpoint, world_images, tmp_path):
    from perception_mtl.inference.graph_export import export_graph
    from perception_mtl.inference.frames import read_image
    from perception_mtl.inference.predictor import Predictor

    torch_side = Predictor.from_checkpoint(tiny_checkpoint)
    export_graph(torch_side.model, torch_side.size, tmp_path / "m.onnx")
    onnx_side = Predictor.from_checkpoint(tiny_checkpoint, tmp_path / "m.onnx")
    rgb = read_image(world_images[0])
    ours, theirs = torch_side.frame(rgb), onnx_side.frame(rgb)
    assert (ours["seg"] != theirs["seg"]).float().mean() < 1e-3
    assert (ours["depth"] - theirs["depth"]).abs().max() < 1e-3
    assert len(ours["det"]["boxes"]) == len(theirs["det"]["boxes"])


@pytest.mark.parametrize("case", ["corrupt image", "empty folder", "not a video", "missing"])
def test_unreadable_input_exits_2_naming_the_file(tiny_checkpoint, world_images, tmp_path, capsys, case):
    folder = tmp_path / "in"
    folder.mkdir()
    if case == "corrupt image":
        Image.open(world_images[0]).save(folder / "a.png")
        (folder / "b.png").write_bytes(Image.open(world_images[0]).tobytes()[:100])  # no PNG header
        culprit = folder / "b.png"
    elif case == "empty folder":
        culprit = folder
    elif case == "not a video":
        culprit = folder / "clip.mp4"
        culprit.write_bytes(b"\x00" * 1000)
    else:
        culprit = folder / "nothing.png"
    target = folder if case == "corrupt image" else culprit
    with pytest.raises(SystemExit) as done:
        tool_main("predict")(["--checkpoint", str(tiny_checkpoint), "--input", str(target),
                          "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert done.value.code == 2 and str(culprit) in err and "Traceback" not in err


def test_show_predictions_draws_prediction_truth_and_errors(tiny_checkpoint, tiny_world, tmp_path):
    out = tmp_path / "cmp.png"
    tool_main("show_predictions")(["--checkpoint", str(tiny_checkpoint), "--frames", "0", "2", "--out", str(out)])
    picture = np.asarray(Image.open(out))
    assert picture.shape[0] > picture.shape[1] / 2 and picture.std() > 10  # 2 x 3 rows of 3 task panels
    with pytest.raises(SystemExit) as done:
        tool_main("show_predictions")(["--checkpoint", str(tiny_checkpoint), "--frames", "9", "--out", str(out)])
    assert done.value.code == 2


def test_error_maps():
    from perception_mtl.tasks.depth import abs_rel_map
    from perception_mtl.tasks.seg import wrong_class_map

    gt = np.array([[0, 1], [255, 2]])
    rgb, fraction = wrong_class_map(np.array([[0, 2], [5, 2]]), gt, np.full((2, 2, 3), 200, np.uint8))
    assert fraction == pytest.approx(1 / 3) and tuple(rgb[0, 1]) == (255, 40, 40) and tuple(rgb[1, 0]) == (0, 0, 0)
    err = abs_rel_map(np.array([[10.0, 5.0], [3.0, 1.0]]), np.array([[8.0, 0.0], [3.0, 100.0]]), 0.5, 80.0)
    assert err[0, 0] == pytest.approx(0.25) and err[1, 0] == 0 and err.mask.tolist() == [[False, True], [False, True]]


def _render(draw) -> np.ndarray:
    """What `draw(ax)` leaves on one axis of a fixed-size figure, as RGB."""
    import matplotlib.pyplot as plt

    from perception_mtl.inference.overlay import figure_to_rgb

    fig, ax = plt.subplots(figsize=(4, 2.4), dpi=100)
    draw(ax)
    ax.set_title("")  # the panels are compared without their titles
    return figure_to_rgb(fig)


def test_every_registered_task_draws_its_own_panel(world_images):
    """Each task's `draw` puts its prediction on its panel (the panel differs from the bare image),
    and `overlay` gives every task with a prediction a panel of its own."""
    from perception_mtl.engine.builders import build_model, build_tasks, load_config
    from perception_mtl.engine.evaluator import predict_batch
    from perception_mtl.inference.overlay import overlay
    from perception_mtl.tasks import TASKS
    from perception_mtl.visualize import image_panel

    torch.manual_seed(0)
    cfg = load_config(None, ["model.backbone=test_resnet", "model.weights=null", "data.size=[64,128]",
                             f"tasks=[{','.join(TASKS.names())}]", "task.det.score_thresh=0.0"], defaults=None)
    tasks = build_tasks(cfg)
    model = build_model(cfg, tasks).eval()
    image = np.array(Image.open(world_images[0]).convert("RGB"))
    frame = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    preds = {t: p[0] for t, p in predict_batch(model, tasks, frame, (64, 128)).items()}
    bare = _render(lambda ax: image_panel(ax, image, ""))
    for name, task in tasks.items():
        drawn = _render(lambda ax: task.draw(ax, image, preds[name], 0.0))
        assert (np.abs(drawn.astype(int) - bare).max(-1) > 40).mean() > 0.01, name
    widths = {n: overlay(image, preds, {t: tasks[t] for t in list(tasks)[:n]}, dpi=50).shape[1] for n in (1, 2, len(tasks))}
    assert widths[1] < widths[2] < widths[len(tasks)]
    assert widths[len(tasks)] == pytest.approx(widths[1] + (len(tasks) - 1) * (widths[2] - widths[1]), abs=len(tasks))


def test_every_task_of_the_world_draws_its_ground_truth(tiny_world, tmp_path):
    """`Task.truth` gives each task's labels in its prediction's form, which its `draw` draws: every
    task the world labels differs from the bare image; the gallery tool draws them all."""
    from perception_mtl.data.build import val_loaders
    from perception_mtl.engine.builders import build_tasks, load_config
    from perception_mtl.visualize import image_panel

    names = ["centers", "depth", "det", "edges", "noise", "normals", "scene", "seg"]  # all but BDD100K's drivable
    cfg = load_config(None, [f"data.root={tiny_world}", "data.size=[64,128]", f"tasks=[{','.join(names)}]",
                             "model.backbone=test_resnet", "model.weights=null"], defaults=None)
    loader, part = next(iter(val_loaders(cfg, "val").values()))
    batch = loader.collate_fn([loader.dataset[0]])
    image = (batch["image"][0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    bare = _render(lambda ax: image_panel(ax, image, ""))
    for name, task in build_tasks(cfg).items():
        truth = task.truth(batch, 0)
        assert truth is not None, name
        drawn = _render(lambda ax: task.draw(ax, image, truth, 0.0))
        assert (np.abs(drawn.astype(int) - bare).max(-1) > 40).mean() > 0.005, name
    out = tmp_path / "gallery.png"
    tool_main("show_samples")(["--root", str(tiny_world), "--frames", "0", "1", "--out", str(out),
                               f"tasks=[{','.join(names)}]"])
    assert np.asarray(Image.open(out)).std() > 10
