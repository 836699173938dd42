"""`snakemake stage`, the offline half: the dry run lists exactly what would be fetched, a cache
laid out by the test passes offline with a manifest, a missing entry fails naming it."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import mteb
import pytest
import yaml

from tests.conftest import PAPER_PRESET, copy_workflow, paper_data_overlay, run_snakemake
from tests.hub_layout import DATASETS, model_files, write_repo
from tsdcls.common.assets import minilm_path
from tsdcls.tempscale.tasks.hub import dataset_entry

pytestmark = pytest.mark.slow  # real snakemake end to end (make test-fast skips it)

HUB_ID = "tsdcls-test/all-MiniLM-L6-v2-hub"
REVISION = "0123456789abcdef0123456789abcdef01234567"


def workflow(tmp_path: Path) -> Path:
    """A copy of the workflow (the Snakefile includes stage.smk)."""
    return copy_workflow(tmp_path / "wf")


def test_dry_run_lists_every_pinned_entry_of_the_paper_preset(tmp_path: Path, repo: Path) -> None:
    workdir = workflow(tmp_path)
    proc = run_snakemake(workdir, "-n", "stage", configfiles=(PAPER_PRESET, paper_data_overlay(workdir)), timeout=300)
    listed = {line.strip() for line in proc.stdout.splitlines() if line.startswith("  model ") or line.startswith("  dataset ")}
    paper = yaml.safe_load((repo / "workflow/presets/paper.yaml").read_text())["tempscale"]
    expected = {f"model {name}@{rev}" for name, rev in paper["model_revisions"].items()}
    hub = paper["tasks"]["hub"]
    tasks = list(mteb.get_tasks(tasks=hub["tasks"])) + [t for b in hub["benchmarks"] for t in mteb.get_benchmark(b).tasks]
    expected |= {f"dataset {dataset_entry(t).repo_id}@{dataset_entry(t).revision}" for t in tasks}
    assert listed == expected, (listed ^ expected)
    assert {"model BAAI/bge-m3@" + paper["model_revisions"]["BAAI/bge-m3"]} <= listed
    assert f"{len(expected)} hub entries" in proc.stdout


def stage_config(tmp_path: Path, cache: Path) -> Path:
    overlay = {
        "resources": {"hf_cache": str(cache)},
        "tempscale": {"model_revisions": {HUB_ID: REVISION}, "models": ["minilm"],
                      "ablation": {"models": ["minilm", HUB_ID]},
                      "tasks": {"hub": {"tasks": ["LEMBPasskeyRetrieval"], "benchmarks": []}}},
    }  # fmt: skip
    path = tmp_path / "stage.yaml"
    path.write_text(yaml.safe_dump(overlay))
    return path


def test_stage_offline_checks_the_cache_and_writes_the_manifest(tmp_path: Path) -> None:
    workdir, cache = workflow(tmp_path), tmp_path / "hf"
    snapshot = write_repo(cache / "hub", "model", HUB_ID, REVISION, model_files(minilm_path()))
    entry = dataset_entry(mteb.get_task("LEMBPasskeyRetrieval"))
    write_repo(cache / "hub", "dataset", entry.repo_id, entry.revision, DATASETS["LEMBPasskeyRetrieval"]())
    overlay = stage_config(tmp_path, cache)
    run_snakemake(workdir, "stage", configfiles=("workflow/presets/smoke.yaml", str(overlay)), timeout=300)
    manifest = json.loads((workdir / "results/stage/hf_manifest.json").read_text())
    assert manifest["offline"] is True  # allow_network: false -> the job only checks the cache
    by_name = {e["name"]: e for e in manifest["entries"]}
    assert set(by_name) == {HUB_ID, entry.repo_id}
    model = by_name[HUB_ID]
    assert model["revision"] == REVISION and model["kind"] == "model"
    weights = next(f for f in model["files"] if f["path"] == "model.safetensors")
    real = (snapshot / "model.safetensors").resolve()
    assert weights["bytes"] == real.stat().st_size
    assert weights["sha256"] == hashlib.sha256(real.read_bytes()).hexdigest()
    assert model["bytes"] == sum(f["bytes"] for f in model["files"])
    assert "provenance" in manifest


def test_stage_offline_with_a_missing_entry_names_it(tmp_path: Path) -> None:
    workdir, cache = workflow(tmp_path), tmp_path / "hf"
    write_repo(cache / "hub", "model", HUB_ID, REVISION, model_files(minilm_path()))  # dataset missing
    overlay = stage_config(tmp_path, cache)
    proc = run_snakemake(workdir, "stage", configfiles=("workflow/presets/smoke.yaml", str(overlay)), timeout=300, check=False)
    assert proc.returncode != 0
    log = (workdir / "results/logs/stage/job.log").read_text()
    entry = dataset_entry(mteb.get_task("LEMBPasskeyRetrieval"))
    line = next(line for line in log.splitlines() if entry.repo_id in line)
    assert entry.revision in line and "snakemake stage" in line, line
    assert HUB_ID not in log.split("missing:")[-1]  # the staged model is not reported missing
    assert not (workdir / "results/stage/hf_manifest.json").exists()
