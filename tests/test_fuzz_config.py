"""Fuzzed settings (hypothesis; examples: tests/fuzzing.py's `examples` times the profile's count):
numeric config overrides at wrong types and out-of-range values (loaded, and the accepted ones
trained for a step), suite YAML files (mutated bytes and random structures), and the tools run as
processes on inputs the fuzzing found. Each ends in a result or in "<kind> error: ..." with exit
code 2 and no traceback; a refused run leaves no metrics.json (its folder never looks finished).
The examples that crashed before their fix are kept below as regression cases."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import given
from hypothesis import strategies as st
from omegaconf import OmegaConf

from perception_mtl.benchmark.suite import Suite
from perception_mtl.benchmark.suite_checks import KEYS as SUITE_KEYS
from perception_mtl.core.config import _valid_keys, structured
from perception_mtl.engine.builders import load_config

from fuzzing import JSON, ends_well, examples, mutations
from helpers import TINY_TRAIN, tool_main

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = structured()
NUMERIC = [k for k in _valid_keys(SCHEMA) if type(OmegaConf.select(SCHEMA, k)) in (int, float)
           or OmegaConf.select(SCHEMA, k) is None and k.endswith(("_limit", "threads"))]
BAD_NUMBERS = st.one_of(st.sampled_from(["-1", "0", "-0.5", "0.5", "2", "nan", "inf", "-inf", "1e-12", "abc", "[1]",
                                         "{}", "null", "true", "1e400", "-2147483649"]),
                        st.integers(-10**4, 10**4).map(str), st.floats(-1e4, 1e4).map(repr))
OVERRIDE = st.tuples(st.sampled_from(NUMERIC), BAD_NUMBERS).map("=".join)


@examples(1)
@given(st.lists(OVERRIDE, min_size=1, max_size=3))
def test_numeric_overrides_load_or_are_refused(overrides):
    ends_well(load_config, None, [*TINY_TRAIN, *overrides])


@examples(0.4)
@given(OVERRIDE)
def test_an_accepted_override_trains_a_step_or_is_refused(tiny_world, override):
    """Through tools/train.py's main, as a user runs it; a refused run leaves no metrics.json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "run"
        refused, _ = ends_well(tool_main("train"), [*TINY_TRAIN, f"data.root={tiny_world}", f"output_dir={out}",
                                                    "train.steps=1", "tasks=[seg,depth]", override])
        assert (out / "metrics.json").exists() == (refused is None)


CRASHES = [  # override -> how tools/train.py crashed on it before builders.BOUNDS and _check_bounds
    ("data.min_box_size=-1.0", "ValueError: min_size must be >= 1"),
    ("data.hflip=inf", "ValueError: `p` should be a floating point value in the interval [0.0, 1.0]"),
    ("data.color_jitter=inf", "RuntimeError: to is out of bounds for float"),
    ("data.workers=-1", "ValueError: num_workers option should be non-negative"),
    ("data.train_limit=0", "ZeroDivisionError: integer division or modulo by zero"),
    ("model.pretrained_path=-1", "FileNotFoundError: model.pretrained_path=-1 does not exist"),
    ("model.neck_channels=0", "RuntimeError: Given groups=1, expected weight to be at least 1"),
    ("model.head_channels=-1", "RuntimeError: Trying to create tensor with negative dimension -1"),
    ("task.det.topk_candidates=-1", "RuntimeError: selected index k out of range"),
    ("task.depth.min_depth=-1.0", "ValueError: math domain error"),
    ("task.depth.variance_focus=nan", "NonFiniteLossError: non-finite loss for task(s) ['depth'] at step 1"),
    ("task.depth.variance_focus=inf", "NonFiniteGradientError: non-finite gradient (depth) at step 1"),
    ("optim.lr=-1.0", "ValueError: Invalid learning rate: -1.0"),
    ("optim.lr=nan", "ValueError: Invalid learning rate: nan"),
    ("train.threads=-1", "RuntimeError: set_num_threads expects a positive integer"),
    ("model.head_channels=1", "ValueError: num_channels (1) must be divisible by num_groups (8)"),
    ("model.freeze_at=8", "ValueError: model.freeze_at=8 but FeatureListNet has 5 feature levels"),
    ("data.root=${oops}", "InterpolationKeyError: Interpolation key 'oops' not found"),
]


@pytest.mark.parametrize("override, crash", CRASHES, ids=[o for o, _ in CRASHES])
def test_overrides_that_crashed_training_are_config_errors(tiny_world, tmp_path, override, crash):
    """Through tools/train.py's main where the model finds the fault (model.*), else through the
    config check that now refuses it before any work (a tenth of the time)."""
    argv = [*TINY_TRAIN, f"data.root={tiny_world}", f"output_dir={tmp_path / 'run'}", "train.steps=1", override]
    found_by_model = override.startswith(("model.pretrained_path", "model.freeze_at"))
    refused, _ = ends_well(tool_main("train"), argv) if found_by_model else ends_well(load_config, None, argv)
    key = override.split("=")[0]
    assert refused is not None and refused.startswith((f"config error: {key}=", f"config error: {key}: "))
    assert not (tmp_path / "run" / "metrics.json").exists()


GOOD_SUITE = """name: fuzz
config: {data.size: [64, 128], model.backbone: test_resnet, model.weights: null, train.steps: 2}
tasks: [seg, depth]
seeds: [0]
baselines: false
methods: [equal, {name: pcgrad, label: pcgrad-rep, params: {space: representation}}]
test: {split: test, limit: 2}
"""
SUITE_VALUE = st.one_of(JSON, st.lists(st.sampled_from(["seg", "depth", "det", "equal", "uncertainty", 0, 1]),
                                       max_size=3))
SUITE = st.dictionaries(st.one_of(st.sampled_from(sorted(SUITE_KEYS)), st.text(max_size=5)), SUITE_VALUE, max_size=8)


def _load_suite(content: bytes) -> list:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "suite.yaml"
        path.write_bytes(content)
        return Suite.load(path).runs()


@examples(3)
@given(st.one_of(mutations(GOOD_SUITE.encode()),
                 SUITE.map(lambda spec: yaml.safe_dump({**yaml.safe_load(GOOD_SUITE), **spec}).encode())))
def test_suite_files_load_or_are_refused(content):
    ends_well(_load_suite, content)


def test_the_tools_as_processes_on_inputs_the_fuzzing_found(tiny_checkpoint, tmp_path):
    """tools/train.py, benchmark.py and evaluate.py started as a user starts them (three processes at
    once): exit code 2 and the message, no traceback."""
    (tmp_path / "suite.yaml").write_bytes(b"name: x\ntasks: [seg\n")
    state = torch.load(tiny_checkpoint, weights_only=False)
    torch.save({**state, "config": 3}, tmp_path / "last.pt")
    cases = {"train": (["data.min_box_size=-1.0"], "config error: data.min_box_size=-1.0 must be >= 1"),
             "benchmark": (["--suite", str(tmp_path / "suite.yaml")],
                           f"config error: {tmp_path / 'suite.yaml'} is not a YAML suite: while parsing"),
             "evaluate": (["--checkpoint", str(tmp_path / "last.pt")],
                          f"checkpoint error: {tmp_path / 'last.pt'} is not a perception_mtl checkpoint (config is "
                          "int, not dict)")}
    procs = {tool: subprocess.Popen([sys.executable, str(ROOT / "tools" / f"{tool}.py"), *argv], cwd=tmp_path,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for tool, (argv, _) in cases.items()}
    for tool, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 2 and "Traceback" not in err, (tool, err)
        assert err.strip().splitlines()[0].startswith(cases[tool][1]) and len(err.strip().splitlines()) == 1, err


@pytest.mark.parametrize("spec, crash", [  # suites the fuzzing found, and how they failed before
    ({"config": [None]}, "AttributeError: 'list' object has no attribute 'items'"),
    ({"tasks": [None]}, "TypeError: sequence item 0: expected str instance, NoneType found"),
    ({"tasks": None}, "TypeError: 'NoneType' object is not iterable"),
    ({"experiments": ["depth"]}, "AttributeError: 'list' object has no attribute 'items'"),
    ({1e100: None}, "TypeError: '<' not supported between instances of 'float' and 'str'"),
    ({"experiments": {"a\nb": {}}}, "a message of two lines"),
    ({"config": {"\n": None}}, "a message of two lines"),
], ids=["config a list", "a task null", "tasks null", "experiments a list", "a number as key",
        "an experiment named with a newline", "a config key with a newline"])
def test_suites_that_crashed_are_config_errors(spec, crash):
    refused, _ = ends_well(_load_suite, yaml.safe_dump({**yaml.safe_load(GOOD_SUITE), **spec}).encode())
    assert refused is not None and refused.startswith("config error: ")

