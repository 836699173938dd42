"""The rehearsal: the paper preset's code paths on CPU, offline, as `make rehearsal` runs them.

One real run (workflow/presets/rehearsal.yaml over paper.yaml) on data that
workflow/scripts/write_rehearsal_data.py writes in the real layouts, with a preemption in the
middle: the workflow running the ConvNeXt-T-DCLS training (torchrun, 2 gloo processes) is sent
SIGTERM after the mid-epoch checkpoint, then restarted, and the training must resume from that
checkpoint. The tests then read what the run left: paper-shape models, every robustness layout,
mteb's own hub task classes read from the local Hugging Face cache, and `scale: rehearsal` on
every result file.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import (
    PAPER_PRESET,
    REPO,
    SUMMARY_LINES,
    copy_workflow,
    network_guard,
    run_snakemake,
    snakemake_cmd,
    workflow_env,
)
from tests.test_dcls_official import PARAMS as OFFICIAL_PARAMS
from tsdcls.common.config import merge_config_files
from tsdcls.common.io import read_json, read_provenance
from tsdcls.dcls.checkpoint import CHECKPOINT_NAME

REHEARSAL_PRESET = "workflow/presets/rehearsal.yaml"
CONFIGS = (PAPER_PRESET, REHEARSAL_PRESET)
PREEMPTED = "convnext_tiny/dcls_v0/k34_d17/seed0"
PREEMPTED_STEM = "convnext_tiny_dcls_v0_k34_d17_seed0"
# the recipe keys the rehearsal must leave as paper.yaml sets them
RECIPE_KEYS = ("auto_augment", "mixup", "cutmix", "label_smoothing", "random_erasing", "ema_decay",
               "lr", "weight_decay", "position_lr_scale", "amp", "amp_dtype", "channels_last")
BUDGET_S = 600  # the limit for the whole rehearsal on 2 cores


def _config() -> dict:
    return merge_config_files([REPO / "config.yaml", REPO / PAPER_PRESET, REPO / REHEARSAL_PRESET])


def test_rehearsal_keeps_the_paper_recipe_and_models() -> None:
    paper = merge_config_files([REPO / "config.yaml", REPO / PAPER_PRESET])
    config = _config()
    assert config["scale"] == "rehearsal" and config["device"] == "cpu" and not config["allow_network"]
    train, paper_train = config["dcls"]["train"], paper["dcls"]["train"]
    assert {k: train[k] for k in RECIPE_KEYS} == {k: paper_train[k] for k in RECIPE_KEYS}
    assert train["accumulation_steps"] > 1 and train["repulsion"]["enabled"] and train["num_workers"] >= 1
    assert config["dcls"]["families"] == paper["dcls"]["families"]  # drop path, layer scale, archs
    assert config["dcls"]["data"]["image_size"] == paper["dcls"]["data"]["image_size"] == 224
    assert config["dcls"]["cpu_processes"] == 2
    for key in ("models", "model_revisions"):
        assert config["tempscale"][key] == paper["tempscale"][key], key
    assert set(config["tempscale"]["ablation"]["models"]) <= set(paper["tempscale"]["ablation"]["models"])
    hub = config["tempscale"]["tasks"]["hub"]["tasks"]
    assert set(paper["tempscale"]["tasks"]["hub"]["tasks"]) <= set(hub)  # all of LongEmbed
    assert "rehearsal:" in (REPO / "Makefile").read_text()


def _preempt_training(workdir: Path) -> str:
    """Start the preempted cell's training through the workflow, SIGTERM the whole run after
    its mid-epoch checkpoint, and return the log of the stopped job."""
    target = f"results/dcls/runs/{PREEMPTED}/weights.pt"
    cmd = [*network_guard(workdir, trace=False, loopback=True), *snakemake_cmd(), "--cores", "2", target, "--configfile", *CONFIGS]
    run = subprocess.Popen(cmd, cwd=workdir, env=workflow_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True)
    checkpoint = workdir / "results/dcls/checkpoints" / PREEMPTED_STEM / CHECKPOINT_NAME
    deadline = time.monotonic() + 400
    while not checkpoint.exists() and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert run.poll() is None, f"the run ended before its mid-epoch checkpoint:\n{run.communicate()[0][-4000:]}"
    os.killpg(run.pid, signal.SIGTERM)  # what a preempted allocation gets
    output, _ = run.communicate(timeout=120)
    assert run.returncode != 0, output[-3000:]
    assert not (workdir / target).exists()
    return (workdir / f"results/logs/dcls_train/{PREEMPTED_STEM}.log").read_text()


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data written, training preempted and resumed, the whole DAG plus `stage`, offline."""
    workdir = copy_workflow(tmp_path_factory.mktemp("rehearsal"))
    start = time.monotonic()
    script = [sys.executable, "workflow/scripts/write_rehearsal_data.py", "--configfile", "config.yaml", *CONFIGS]
    proc = subprocess.run(script, cwd=workdir, env=workflow_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stopped_log = _preempt_training(workdir)
    assert "stopped by SIGTERM" in stopped_log, stopped_log[-3000:]
    run_snakemake(workdir, "all", "stage", "--rerun-incomplete", configfiles=CONFIGS, timeout=1200,
                  wrapper=network_guard(workdir, trace=False, loopback=True))
    seconds = time.monotonic() - start
    SUMMARY_LINES.append(f"rehearsal: data + preempted training + whole DAG + stage in {seconds:.0f} s "
                         f"(budget {BUDGET_S} s on 2 cores)")
    (workdir / "wall_seconds").write_text(f"{seconds:.1f}")
    return workdir


def test_preempted_training_resumed_mid_epoch(rehearsal: Path) -> None:
    log = (rehearsal / f"results/logs/dcls_train/{PREEMPTED_STEM}.log").read_text()
    match = re.search(rf"resumed {re.escape(PREEMPTED)} from \S+ at epoch (\d+) step (\d+)", log)
    assert match, log[-3000:]
    record = read_json(rehearsal / f"results/dcls/runs/{PREEMPTED}/train.json")
    epoch, step = int(match[1]), int(match[2])
    assert epoch == 0 and 0 < step < record["steps_per_epoch"], (epoch, step)  # inside the epoch
    assert record["steps"] == record["steps_per_epoch"] * record["epochs"]


def test_paper_shape_models_trained_by_two_gloo_processes(rehearsal: Path) -> None:
    # ConvNeXt-T-DCLS as the official ConvNeXt-dcls code counts it; ResNet-50's count is unchanged
    expected = {"convnext_tiny/dcls_v0/k34_d17": OFFICIAL_PARAMS["tiny"], "resnet50/dcls_v0/k3_d7": 25_557_032,
                "convnext_tiny/dense/k0_d0": None}
    for cell, params in expected.items():
        record = read_json(rehearsal / f"results/dcls/runs/{cell}/seed0/train.json")
        assert record["world_size"] == 2 and record["global_batch"] == 8, cell
        assert record["steps"] >= 4 and record["train_images"] == 32, cell
        if params is not None:
            assert record["params"] == params, (cell, record["params"])
        metrics = read_json(rehearsal / f"results/dcls/runs/{cell}/seed0/metrics.json")
        assert metrics["weights"] == "ema" and len(metrics["class_names"]) == 1000
        assert set(metrics["robustness"]) == {"imagenet-a", "imagenet-r", "imagenet-sketch",
                                              "imagenet-c/gaussian_noise@3", "imagenet-c/contrast@3"}
    resnet = read_json(rehearsal / "results/dcls/runs/resnet50/dcls_v0/k3_d7/seed0/train.json")
    assert resnet["dcls_layers"] == 16  # every 3x3 conv of ResNet-50's 16 bottlenecks


def test_hub_tasks_and_hub_models_from_the_local_cache(rehearsal: Path) -> None:
    frame = pd.read_csv(rehearsal / "results/tempscale/ablation.csv", comment="#")
    config = _config()["tempscale"]
    for model in config["ablation"]["models"]:
        tasks = set(frame.loc[frame["model"] == model, "task"])
        assert set(config["tasks"]["hub"]["tasks"]) <= tasks, (model, sorted(tasks))
    manifest = read_json(rehearsal / "results/stage/hf_manifest.json")
    assert manifest["offline"] and manifest["n_entries"] == 12


def test_scale_rehearsal_on_every_result(rehearsal: Path) -> None:
    results = rehearsal / "results"
    skip = {"logs", "benchmarks", "rehearsal-data", "dcls/checkpoints", "tempscale/mteb"}
    checked = 0
    for path in sorted(results.rglob("*")):
        rel = path.relative_to(results).as_posix()
        if not path.is_file() or any(rel.startswith(s) for s in skip):
            continue
        if path.suffix in {".json", ".csv", ".md", ".tex", ".png", ".pdf"}:
            assert read_provenance(path).get("scale") == "rehearsal", rel
            checked += 1
    assert checked > 40
    tables = results / "tables"
    assert "scale: rehearsal" in (tables / "dcls_ablation.md").read_text()
    paper = (tables / "paper_vs_reproduced.md").read_text()
    assert "this run (rehearsal)" in paper and "scale **rehearsal**" in paper
    longembed = paper.split("## LongEmbed", 1)[1].split("## ", 1)[0]
    assert "BAAI/bge-m3" in longembed  # hub LongEmbed rows of a hub-id model


def test_rehearsal_wall_time_is_recorded(rehearsal: Path) -> None:
    """The wall time is a measurement, printed in the test summary (a shared CI machine's load
    decides it; the 600 s budget is checked by running `make rehearsal` on idle cores, not here)."""
    seconds = float((rehearsal / "wall_seconds").read_text())
    assert seconds > 0
    if seconds > BUDGET_S:
        warnings.warn(f"rehearsal took {seconds:.0f} s > its {BUDGET_S} s budget (machine load?)", stacklevel=1)
