"""The docs cannot rot: every command in README.md and docs/*.md is checked without running it.

Commands are taken from fenced bash blocks, from `$ `-prefixed lines of console transcripts, and from
inline code spans that start with `python tools/` or a pytest call. For `python tools/X.py ...`
(also behind torchrun, srun, `time` or environment assignments) the tool exists and its own argparse
parser accepts the arguments: the tool is imported by path, `ArgumentParser.parse_args` parses for
real and then raises a private exception before `main` does any work. Then `--config`/`--suite` files
exist, `key=value` overrides load through `engine.builders.load_config` (the schema, the default
config and the registries, as tools/train.py loads them), and a suite's `launcher.*` overrides go
through `launch.settings.launcher_config`, as tools/benchmark.py checks them. A transcript whose
documented answer is a config error must raise one. Placeholders (`<your partition>`, `FILE`,
`[--split val]`) get sample values from PLACEHOLDERS; other programs are checked where they name a
repository file or a package pin, and what cannot be checked is listed in UNCHECKED with its reason.
Every relative link and image resolves, every anchor names a heading, and every repository path
named in backticks exists. The README's test count and times are not checked.
"""
from __future__ import annotations

import argparse
import ast
import importlib.util
import inspect
import re
import shlex
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

# sample values for the placeholders of usage lines; a placeholder not listed here fails the test
PLACEHOLDERS = {
    "<your partition>": "gpu", "<account>": "my_lab", "<qos>": "normal", "<name>": "fpn", "<suite>": "quick",
    "key=value": "train.steps=10", "FILE": "configs/dataset/world_mix.yaml", "DIR": "runs/x/out",
    "PATH": "runs/demo/frames", "F": "runs/x/model.onnx", "RESULTS_DIR": "runs/benchmark/smoke",
    "E": "my_lab", "N": "10", "M": "5", "K": "5", "S": "0", "H": "64", "W": "128",
}
# programs whose commands name nothing in the repository to check, and why
UNCHECKED = {
    "mkdir": "creates a scratch folder under runs/",
    "cp": "copies frames of the generated world (datasets/generated/ is built by make_synthetic.py, not tracked)",
    "export": "sets an environment variable",
}
WRAPPERS = {"sudo", "time", "/usr/bin/time", "nice"}  # run the command that follows them
REPO_DIRS = ("perception_mtl/", "tools/", "configs/", "tests/", "docs/", ".ci/")


@dataclass(frozen=True)
class Command:
    page: str
    text: str  # as written, continuations joined
    expect: str = ""  # a transcript's documented answer, e.g. "config error: ..."

    def __str__(self) -> str:
        return f"{self.page}: {self.text}"


def fenced_blocks(text: str) -> list[tuple[str, list[str]]]:
    """(info string, lines) of every fenced code block."""
    blocks, info, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if info is None:
                info, body = line[3:].strip(), []
            else:
                blocks.append((info, body))
                info = None
        elif info is not None:
            body.append(line)
    return blocks


def without_fences(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.M | re.S)


def commands(page: Path) -> list[Command]:
    """The commands a page shows: bash blocks (`\\` continuations joined, one command a line),
    `$ ` lines of other blocks (with the line after as the documented answer), and inline spans
    that start with a python tool or pytest."""
    name, text = str(page.relative_to(ROOT)), page.read_text()
    found = []
    for info, lines in fenced_blocks(text):
        if info == "bash":
            joined = re.sub(r"\\\n\s*", " ", "\n".join(lines))
            found += [Command(name, line.strip()) for line in joined.splitlines() if line.strip()]
        elif info in ("", "console"):
            for i, line in enumerate(lines):
                if line.startswith("$ "):
                    answer = lines[i + 1] if i + 1 < len(lines) else ""
                    found.append(Command(name, line[2:].strip(), answer))
    for span in re.findall(r"`([^`]+)`", without_fences(text), flags=re.S):
        span = " ".join(span.split())
        if re.match(r"(\S+=\S+ |/usr/bin/time -v |time )?python (tools/|-m pytest)|pytest |torchrun ", span):
            found.append(Command(name, span))
    return found


ALL = [c for page in PAGES for c in commands(page)]


def substitute(text: str) -> str:
    """Usage lines made concrete: `[--opt X]` -> `--opt X`, `a|b` -> `a`, placeholders -> samples."""
    text = re.sub(r"\[key=value \.\.\.\]", "key=value", text)
    text = re.sub(r"\[(-[^\[\]]*)\]", r"\1", text)  # optional options, not `tasks=[det,seg]`
    text = re.sub(r"(?<=\s)\.\.\.(?=\s|$)", "", text)
    text = re.sub(r"\b([\w-]+)(?:\|[\w-]+)+\b", r"\1", text)  # alternatives: the first
    for key in sorted((k for k in PLACEHOLDERS if k.startswith("<") or "=" in k), key=len, reverse=True):
        text = text.replace(key, PLACEHOLDERS[key])
    left = re.findall(r"<[^<>]+>", text)
    assert not left, f"{text}: placeholders {left} have no sample value in PLACEHOLDERS"
    tokens = shlex.split(text, comments=True)
    return shlex.join(PLACEHOLDERS.get(t, t) for t in tokens)


def segments(command: Command) -> list[list[str]]:
    """The simple commands of a `&&` chain, each as its tokens."""
    tokens = shlex.split(substitute(command.text), comments=True)
    parts, current = [], []
    for token in tokens:
        if token in ("&&", ";"):
            parts.append(current)
            current = []
        else:
            current.append(token)
    return [p for p in parts + [current] if p]


def unwrap(tokens: list[str]) -> list[str]:
    """Drop environment assignments and wrappers (sudo, time -v, srun's and torchrun's options): what
    remains starts at the program that does the work (`python ...`, or `tools/train.py` for torchrun)."""
    while tokens and (re.match(r"^[A-Z_][A-Z0-9_]*=", tokens[0]) or tokens[0] in WRAPPERS
                      or (tokens[0] == "-v" and len(tokens) > 1)):
        tokens = tokens[1:]
    if tokens and tokens[0] in ("srun", "torchrun"):
        start = next((i for i, t in enumerate(tokens) if t == "python" or t.endswith(".py")), None)
        assert start is not None, f"{tokens[0]} without a python program: {tokens}"
        tokens = tokens[start:] if tokens[start] == "python" else ["python", *tokens[start:]]
    return tokens


def repo_paths(tokens: list[str]) -> list[str]:
    """Arguments (or `--opt=value` values) that name a tracked file or folder of the repository."""
    values = [t.split("=", 1)[1] if t.startswith("-") and "=" in t else t for t in tokens]
    return [v for v in values if v.startswith(REPO_DIRS) and not re.search(r"[<>*{]", v)]


class _Parsed(BaseException):
    """Raised by the patched parser once the arguments parsed: `main` stops before any work (a
    BaseException, so that `cli.exits_2_on_bad_input` does not turn it into an exit code)."""

    def __init__(self, namespace: argparse.Namespace) -> None:
        super().__init__()
        self.namespace = namespace


@cache
def tool_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_docs_tool_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse(tool: Path, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> argparse.Namespace:
    """The tool's own parser applied to `argv` through its `main`, which is stopped right after."""
    parse_args = argparse.ArgumentParser.parse_args
    parse_known_args = argparse.ArgumentParser.parse_known_args
    inside = []

    def patched_parse_args(self, args=None, namespace=None):
        inside.append(True)
        try:
            namespace = parse_args(self, args, namespace)
        finally:
            inside.pop()
        raise _Parsed(namespace)

    def patched_parse_known_args(self, args=None, namespace=None):
        if inside:  # parse_args's own call
            return parse_known_args(self, args, namespace)
        raise _Parsed(parse_known_args(self, args, namespace)[0])

    monkeypatch.setattr(argparse.ArgumentParser, "parse_args", patched_parse_args)
    monkeypatch.setattr(argparse.ArgumentParser, "parse_known_args", patched_parse_known_args)
    monkeypatch.setattr(sys, "argv", [str(tool), *argv])  # tools whose main() reads sys.argv
    main = tool_module(tool).main
    try:
        main(argv) if inspect.signature(main).parameters else main()
    except _Parsed as parsed:
        return parsed.namespace
    except SystemExit as err:
        pytest.fail(f"{tool.name} refuses {argv}: exit {err.code}")
    pytest.fail(f"{tool.name}'s main returned without parsing its arguments")


@cache
def suite_spec(path: str) -> dict:
    """The suite as tools/benchmark.py loads it (keys, types, world), less the check of every run's
    config, which takes minutes for the larger suites and runs when the suite does."""
    from perception_mtl.benchmark.suite import Suite

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Suite, "validate", lambda self: None)
        return Suite.load(ROOT / path).spec


def check_settings(tool: str, ns: argparse.Namespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the tool will load: the config with its overrides, or the suite with its launcher
    overrides (resolved as on a SLURM login node with 16 cores, the machine the docs' cluster
    commands are written for)."""
    from perception_mtl.benchmark.launch import settings
    from perception_mtl.engine.builders import load_config

    monkeypatch.setattr(settings, "cores", lambda: 16)
    monkeypatch.setattr(settings, "submitit_cluster", lambda launcher: "local" if launcher.cluster == "local" else "slurm")
    if getattr(ns, "suite", None):
        spec = suite_spec(str(ns.suite))
        # bench_launcher.py takes one quoted line of overrides per launcher, benchmark.py one line
        lines = [line.split() for line in ns.launch] if tool == "bench_launcher.py" else [ns.launch]
        for line in lines:
            settings.launcher_config(spec, line)
    if getattr(ns, "overrides", None) is not None:
        load_config(getattr(ns, "config", None), [*ns.overrides, *(getattr(ns, "vs", None) or [])])


def check_python(tokens: list[str], command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    from perception_mtl.core.config import ConfigError

    if tokens[1:3] == ["-m", "pytest"] or tokens[0] == "pytest":
        args = tokens[3:] if tokens[0] == "python" else tokens[1:]
        marker = args[args.index("-m") + 1] if "-m" in args else None
        if marker:
            assert re.search(rf"^\s+{marker}:", (ROOT / "pytest.ini").read_text(), re.M), \
                f"{command}: no pytest marker {marker!r} in pytest.ini"
        paths = [a for a in args if a.startswith("tests")]
        assert paths, f"{command}: pytest without a tests path"
        for path in paths:
            assert (ROOT / path).exists(), f"{command}: no {path}"
        return
    tool = ROOT / tokens[1]
    assert tokens[1].startswith("tools/") and tool.is_file(), f"{command}: no tool {tokens[1]}"
    argv = tokens[2:]
    left = [t for t in argv if re.fullmatch(r"[A-Z][A-Z_]*", t)]
    assert not left, f"{command}: placeholders {left} have no sample value in PLACEHOLDERS"
    ns = parse(tool, argv, monkeypatch)
    if command.expect.startswith("config error:"):  # the documented message, up to an elision
        with pytest.raises(ConfigError) as err:
            check_settings(tool.name, ns, monkeypatch)
        shown = command.expect.removeprefix("config error: ").split("...")[0]
        assert str(err.value).startswith(shown), f"{command}: the docs show {shown!r}, the tool says {err.value}"
        return
    for key in ("config", "suite"):
        if getattr(ns, key, None):
            assert (ROOT / getattr(ns, key)).is_file(), f"{command}: no {key} file {getattr(ns, key)}"
    check_settings(tool.name, ns, monkeypatch)


@cache
def pins() -> dict[str, Requirement]:
    """setup.py's install_requires and extras, by package name."""
    call = next(n for n in ast.walk(ast.parse((ROOT / "setup.py").read_text()))
                if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    reqs = [Requirement(ast.literal_eval(e)) for e in kw["install_requires"].elts]
    return {r.name.lower(): r for r in reqs} | {f"[{x}]": None for x in ast.literal_eval(kw["extras_require"])}


def check_pip(tokens: list[str], command: Command) -> None:
    assert tokens[1] == "install", command
    for arg in tokens[2:]:
        if arg == "-e":
            continue
        if arg.startswith("."):
            assert (ROOT / "setup.py").is_file(), command
            for extra in re.findall(r"\[(\w+)\]", arg):
                assert f"[{extra}]" in pins(), f"{command}: setup.py has no extra {extra!r}"
            continue
        req = Requirement(arg)
        ours = pins().get(req.name.lower())
        assert ours is not None, f"{command}: {req.name} is not a requirement in setup.py"
        for spec in req.specifier:
            assert ours.specifier.contains(spec.version), f"{command}: {arg} is outside setup.py's {ours}"


@pytest.mark.parametrize("command", ALL, ids=[f"{c.page}:{c.text[:60]}" for c in ALL])
def test_command(command: Command, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command of a page names what exists and parses as its tool parses it."""
    for tokens in segments(command):
        tokens = unwrap(tokens)
        for path in repo_paths(tokens[1:]):
            if not command.expect:
                assert (ROOT / path).exists(), f"{command}: no {path} in the repository"
        program = tokens[0]
        if program == "python" or program == "pytest":
            check_python(tokens, command, monkeypatch)
        elif program == "pip":
            check_pip(tokens, command)
        elif program in ("bash", "sh") or program.startswith("tools/"):
            script = tokens[1] if program in ("bash", "sh") else program
            assert (ROOT / script).is_file(), f"{command}: no script {script}"
            if len(tokens) > 1 and program.startswith("tools/"):  # a subcommand the script handles
                assert re.search(rf"^\s*{re.escape(tokens[1])}\)", (ROOT / script).read_text(), re.M), \
                    f"{command}: {script} has no subcommand {tokens[1]}"
        else:
            assert program in UNCHECKED, f"{command}: no check for {program!r}: add one, or a reason to UNCHECKED"


def test_commands_found() -> None:
    """The extraction finds the commands (a broken parser must not pass by finding none)."""
    tools = {unwrap(t)[1] for c in ALL for t in segments(c) if unwrap(t)[0] == "python" and unwrap(t)[1] != "-m"}
    assert len(ALL) >= 60 and {"tools/train.py", "tools/benchmark.py", "tools/predict.py"} <= tools


def test_command_blocks_are_labelled() -> None:
    """A block of commands is a bash block or a `$ ` transcript, so that the extraction sees it."""
    unlabelled = [f"{page.name}: {lines[0]}" for page in PAGES for info, lines in fenced_blocks(page.read_text())
                  if info not in ("bash", "console") and any(
                      re.match(r"(python|pip|pytest|torchrun|srun|sudo|tools/)", line) for line in lines)]
    assert not unlabelled, f"label these blocks bash: {unlabelled}"


def test_parse_catches_a_bad_argument(monkeypatch: pytest.MonkeyPatch) -> None:
    """The parse check can fail: an option the tool does not have stops it, and nothing runs."""
    with pytest.raises(pytest.fail.Exception, match="refuses"):
        parse(ROOT / "tools/train.py", ["--no-such-option"], monkeypatch)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(h) for h in re.findall(r"^#+ (.*)$", without_fences(page.read_text()), re.M)}


LINKS = [(page, target) for page in PAGES
         for target in re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", without_fences(page.read_text()))
         if not re.match(r"[a-z]+:", target)]


@pytest.mark.parametrize("page,target", LINKS, ids=[f"{p.name}:{t}" for p, t in LINKS])
def test_link(page: Path, target: str) -> None:
    """A relative link or image resolves to a file, and its anchor to a heading of that file."""
    path, _, anchor = target.partition("#")
    file = (page.parent / path).resolve() if path else page
    assert file.exists(), f"{page.name}: link to missing {path}"
    if anchor:
        assert anchor in anchors(file), f"{page.name}: no heading #{anchor} in {file.relative_to(ROOT)}"


def test_readme_maps_every_page() -> None:
    """The README's map of the docs names every page under docs/."""
    linked = {(ROOT / target).resolve() for page, target in LINKS if page.name == "README.md"}
    unmapped = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not unmapped, f"add these pages to the README's 'Where to go': {unmapped}"


SUBPACKAGES = {p.name for p in (ROOT / "perception_mtl").rglob("*") if p.is_dir() and p.name != "__pycache__"}


def named_paths(page: Path) -> list[str]:
    """Repository paths named in inline code: `perception_mtl/...`, `tools/...` and the like, and
    module paths written from inside the package such as `engine/trainer.py`."""
    names = []
    for span in re.findall(r"`([^`\s]+)`", without_fences(page.read_text())):
        span = span.rstrip(".,:;")
        if re.search(r"[<>*{}\[\]$]", span) or "/" not in span:
            continue
        if span.startswith(REPO_DIRS) or (span.split("/")[0] in SUBPACKAGES and span.endswith(".py")):
            names.append(span)
    return names


def exists(name: str, modules: list[str]) -> bool:
    """A path from the repository root or, for a module, from a subpackage; `tests/helpers.Name`
    names an attribute of tests/helpers.py, `tests/test_x.py::test_y` a test function."""
    if "::" in name:
        file, _, function = name.partition("::")
        return (ROOT / file).is_file() and re.search(rf"^def {function}\b", (ROOT / file).read_text(), re.M) is not None
    for candidate in (name.rstrip("/"), re.sub(r"\.[A-Za-z_]\w*$", ".py", name)):
        if (ROOT / candidate).exists() or any(m.endswith("/" + candidate) for m in modules):
            return True
    return False


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_named_paths_exist(page: Path) -> None:
    """Every repository path a page names in backticks exists: a module renamed without its docs
    fails here."""
    modules = [p.relative_to(ROOT).as_posix() for p in (ROOT / "perception_mtl").rglob("*.py")]
    missing = [name for name in named_paths(page) if not exists(name, modules)]
    assert not missing, f"{page.name} names paths that do not exist: {missing}"


def test_named_paths_are_found() -> None:
    """The path check sees paths written from the root and from inside the package."""
    names = {n for page in PAGES for n in named_paths(page)}
    assert {"perception_mtl/engine/builders.py", "tests/test_layers.py"} <= names
    assert any(n.split("/")[0] in SUBPACKAGES for n in names)
    assert not exists("engine/no_such_module.py", ["perception_mtl/engine/trainer.py"])
    assert not exists("tests/test_docs.py::test_no_such_test", [])
