"""DCLS trainer: lr schedule, optimiser groups, clamping, repulsion, the paper-recipe code path on
tiny real data, config errors, the launch command, and the smoke DAG's DCLS outputs."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import (
    PAPER_PRESET,
    copy_workflow,
    paper_data_overlay,
    snakemake_cmd,
    workflow_env,
)
from tests.test_dcls_data import imagefolder  # noqa: F401  (fixture: tiny ImageNet-style tree)
from tests.test_ddp import tiny_config
from tsdcls.common.config import USER_ERROR_EXIT, ConfigError
from tsdcls.common.io import read_csv, read_provenance
from tsdcls.dcls.layers import Dcls2d, dcls_modules
from tsdcls.dcls.schedule import lr_at
from tsdcls.dcls.train import (
    RunSpec,
    TrainConfig,
    build_run_model,
    param_groups,
    repulsion_loss,
    train_run,
)


def test_lr_schedule_is_warmup_then_cosine() -> None:
    values = [lr_at(step, 1.0, warmup_steps=10, total_steps=110, min_lr=0.01) for step in range(110)]
    assert values[0] == pytest.approx(0.1) and values[9] == pytest.approx(1.0)
    assert all(a < b for a, b in zip(values[:10], values[1:10], strict=False))
    assert all(a >= b for a, b in zip(values[10:], values[11:], strict=False))
    assert lr_at(60, 1.0, 10, 110, 0.01) == pytest.approx(0.01 + 0.99 * 0.5)  # half-way down the cosine
    assert lr_at(110, 1.0, 10, 110, 0.01) == pytest.approx(0.01)
    assert lr_at(5, 1.0, 0, 10) == pytest.approx(0.5 * (1 + math.cos(math.pi * 0.5)))


def test_positions_get_5x_lr_and_no_weight_decay() -> None:
    config = tiny_config()
    model, report = build_run_model(config, RunSpec("convnext", "dcls_v0", 4, 5, 0), num_classes=10)
    groups = {g["group_name"]: g for g in param_groups(model, TrainConfig(weight_decay=0.05))}
    positions = groups["positions"]
    assert positions["lr_scale"] == 5.0 and positions["weight_decay"] == 0.0
    shared = {id(m.P) for m in dcls_modules(model)}
    assert {id(p) for p in positions["params"]} == shared and len(shared) == 4  # one per stage
    assert groups["decay"]["weight_decay"] == 0.05
    assert all(p.ndim > 1 for p in groups["decay"]["params"])
    assert report["replaced"] == 4
    frozen, _ = build_run_model(config, RunSpec("convnext", "dcls_frozen", 4, 5, 0), num_classes=10)
    assert "positions" not in {g["group_name"] for g in param_groups(frozen, TrainConfig())}


def test_training_moves_positions_and_keeps_them_clamped() -> None:
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    config["train"]["lr"] = 0.5  # huge steps: the clamp must hold the taps inside the grid
    spec = RunSpec("convnext", "dcls_v0", 4, 5, 0)
    torch.set_num_threads(1)
    before, _ = build_run_model(config, spec, 10)
    after = train_run(config, spec, "cpu", checkpoint_dir=None).model
    start = [m.P.detach().clone() for m in dcls_modules(before)]
    end = [m.P.detach() for m in dcls_modules(after)]
    assert any(not torch.equal(a, b) for a, b in zip(start, end, strict=True))
    assert all(float(p.abs().max()) <= 5 // 2 for p in end)
    assert any(float(p.abs().max()) == 5 // 2 for p in end)  # some tap was pushed onto the border


def test_gaussian_training_moves_positions_and_widths_in_the_position_group(tmp_path: Path) -> None:
    """ConvNeXt-Gauss through the real loop (2 steps): the optimiser the trainer built (read back
    from its checkpoint) holds every P and SIG, shared per stage, in the group without weight decay
    at position_lr_scale x the base lr; both move, stay shared, and P stays clamped."""
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    config["train"].update(lr=0.05, weight_decay=0.05, position_lr_scale=5.0, warmup_epochs=0)
    spec = RunSpec("convnext", "dcls_gauss", 4, 5, 0)
    torch.set_num_threads(1)
    before, _ = build_run_model(config, spec, 10)
    after = train_run(config, spec, "cpu", checkpoint_dir=tmp_path).model
    layers, start = dcls_modules(after), dcls_modules(before)
    assert {m.version for m in layers} == {"gauss"} and len(layers) == 4
    shared = [p for m in layers for p in (m.P, m.SIG)]
    assert len({id(p) for p in shared}) == 8  # one P and one SIG per stage (depths 1, 1, 1, 1)
    for old, new in zip(start, layers, strict=True):
        assert not torch.equal(old.P, new.P) and not torch.equal(old.SIG, new.SIG)
        assert float(new.P.detach().abs().max()) <= 5 // 2
    saved = torch.load(tmp_path / "last.pt", map_location="cpu", weights_only=False)["optimizer"]["param_groups"]
    groups = {g["group_name"]: g for g in saved}
    expected = {g["group_name"]: len(g["params"]) for g in param_groups(after, TrainConfig())}
    assert {name: len(g["params"]) for name, g in groups.items()} == expected
    positions = groups["positions"]
    assert positions["weight_decay"] == 0.0 and groups["decay"]["weight_decay"] == 0.05
    assert positions["lr"] == pytest.approx(5.0 * groups["decay"]["lr"]) and positions["lr"] > 0
    ordered = [p for g in param_groups(after, TrainConfig()) for p in g["params"]]
    in_group = {id(ordered[i]) for i in positions["params"]}
    assert in_group == {id(p) for p in shared}


def test_repulsion_loss_pushes_overlapping_taps_apart() -> None:
    layer = Dcls2d(2, 2, kernel_count=3, dilated_kernel_size=9, groups=2)
    with torch.no_grad():
        layer.P.zero_()
        layer.P[0, :, :, 1] = 0.3  # three taps within 0.6 px of each other
        layer.P[0, :, :, 2] = 0.6
    model = torch.nn.Sequential(layer)
    loss = repulsion_loss(model, torch.zeros(()))
    assert float(loss.detach()) > 0.5
    loss.backward()
    layer_p = layer.P.detach() - 1.0 * layer.P.grad
    spread_before = torch.cdist(layer.P.detach()[:, 0, 0].T, layer.P.detach()[:, 0, 0].T).sum()
    spread_after = torch.cdist(layer_p[:, 0, 0].T, layer_p[:, 0, 0].T).sum()
    assert spread_after > spread_before
    with torch.no_grad():
        layer.P[0, :, :, :] = torch.tensor([-4.0, 0.0, 4.0])
    assert float(repulsion_loss(model, torch.zeros(()))) == 0.0


def test_paper_recipe_code_paths_on_tiny_imagefolder(imagefolder: Path) -> None:  # noqa: F811
    """RandAugment, random erasing, mixup/cutmix, label smoothing, EMA, drop path, layer scale,
    gradient accumulation and the repulsion loss, through the ImageNet ImageFolder path."""
    config = tiny_config()
    config["families"]["convnext"]["kwargs"].update(drop_path_rate=0.1, ls_init_value=1e-6)
    config["data"] = {"dataset": "imagefolder", "root": str(imagefolder), "image_size": 32}
    config["train"] = {
        "epochs": 1, "batch_size": 8, "accumulation_steps": 2, "lr": 4e-3, "warmup_epochs": 1,
        "auto_augment": "rand-m9-mstd0.5-inc1", "random_erasing": 0.25, "mixup": 0.8, "cutmix": 1.0,
        "label_smoothing": 0.1, "ema_decay": 0.5, "repulsion": {"enabled": True, "weight": 1.0, "start_epoch": 0},
    }
    torch.set_num_threads(1)
    result = train_run(config, RunSpec("convnext", "dcls_gauss", 4, 5, 0), "cpu", checkpoint_dir=None)
    assert result.record["steps"] == 3 and result.record["train_images"] == 24
    assert math.isfinite(result.record["final_train_loss"])
    ema, model = result.ema.state_dict(), result.model.state_dict()
    assert any(not torch.equal(ema[k], model[k]) for k in model if model[k].is_floating_point())


def test_config_errors_name_the_key() -> None:
    with pytest.raises(ConfigError, match="dcls.train.lr_max"):
        TrainConfig.from_config({"epochs": 1, "lr_max": 1.0})
    with pytest.raises(ConfigError, match="dcls.train.accumulation_steps"):
        TrainConfig.from_config({"batch_size": 10, "accumulation_steps": 3})
    config = tiny_config()
    config["families"]["convnext"]["kwargs"]["depths"] = [1, 1, 1]
    with pytest.raises(ConfigError, match="dcls.families"):
        build_run_model(config, RunSpec("convnext", "dense", 0, 0, 0), 10)
    config = tiny_config(train_size=16, batch_size=32)
    with pytest.raises(ConfigError, match="dcls.train.batch_size"):
        train_run(config, RunSpec("convnext", "dense", 0, 0, 0), "cpu", checkpoint_dir=None)


def test_training_rule_launches_torchrun_per_requested_gpu(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Paper preset (cuda, 4 GPUs per training job): torchrun with 4 processes; default: python."""
    workdir = copy_workflow(tmp_path_factory.mktemp("dcls_launch"))

    def train_commands(*preset: str) -> list[str]:
        proc = subprocess.run([*snakemake_cmd(), "-n", "-p", "--cores", "2", *preset], cwd=workdir,
                              env=workflow_env(), capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        return [line for line in proc.stdout.splitlines() if "dcls-train" in line]

    paper = train_commands("--configfile", PAPER_PRESET, paper_data_overlay(workdir))
    assert paper and all('[ "4" -ge 1 ]' in line and "--nproc_per_node=4" in line for line in paper)
    assert all("checkpoint_dir" in line and "--device cuda" in line for line in paper)
    default = train_commands()
    assert default and all('[ "0" -ge 1 ]' in line for line in default)  # CPU: plain python


# --- the smoke DAG's DCLS outputs (shared session fixture) -----------------------------------------


def test_smoke_dcls_outputs(smoke_run: Path) -> None:
    results = smoke_run / "results"
    runs = read_csv(results / "dcls" / "metrics.csv")
    assert set(runs["variant"]) == {"dense", "dcls_v0"} and len(runs) == 2
    for column in ("family", "variant", "kernel_count", "dks", "seed", "params", "top1", "top5",
                   "robust_top1", "img_per_s", "step_time_ms"):
        assert column in runs.columns and runs[column].notna().all(), column
    assert (runs["top1"] > 15).all() and (runs["top5"] >= runs["top1"]).all()  # chance is 10 %
    assert (runs["img_per_s"] > 0).all()
    table = read_csv(results / "dcls" / "ablation.csv")
    for column in ("params", "top1_mean", "top1_std", "top5_mean", "top5_std", "n_seeds", "img_per_s",
                   "step_time_ms", "params_vs_dense"):
        assert column in table.columns, column
    dense = int(table.loc[table["variant"] == "dense", "params"].iloc[0])
    dcls = int(table.loc[table["variant"] == "dcls_v0", "params"].iloc[0])
    assert abs(dcls - dense) / dense < 0.1  # shared positions keep the count near the dense one
    assert read_provenance(results / "tables" / "dcls_ablation.md")["scale"] == "smoke"
    assert "\\begin{tabular}" in (results / "tables" / "dcls_ablation.tex").read_text()
    for stem in ("dcls_accuracy", "dcls_kernels", "dcls_throughput"):
        assert (results / "figures" / f"{stem}.png").stat().st_size > 10_000
    weights = sorted((results / "dcls" / "runs").rglob("weights.pt"))
    assert len(weights) == 2
    # checkpoints live under the param directory, not among the rule's outputs
    assert sorted(p.name for p in (results / "dcls" / "checkpoints").rglob("last.pt")) == ["last.pt", "last.pt"]


def test_input_error_exits_with_the_no_retry_status_and_one_line(tmp_path: Path) -> None:
    """A wrong dataset root: USER_ERROR_EXIT, one stderr line naming the key and path, no output."""
    config = tiny_config()
    config["data"]["root"] = str(tmp_path / "nonexistent")
    params = {"family": "convnext", "variant": "dense", "kernel_count": 0, "dks": 0}
    cmd = [sys.executable, "-m", "tsdcls.cli", "dcls-train", "--config", json.dumps(config), "--device", "cpu",
           f"--output=weights={tmp_path / 'w.pt'}", f"--output=train={tmp_path / 't.json'}",
           *[f"--param={k}={json.dumps(v)}" for k, v in params.items()]]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == USER_ERROR_EXIT, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert errors == [f"tsdcls dcls-train: input error: config key 'dcls.data.root': {tmp_path / 'nonexistent'} "
                      "is not a directory; set it to the folder holding the Fashion-MNIST IDX files "
                      "(train-images-idx3-ubyte[.gz] ...)"], proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "apt-get" not in proc.stderr
    assert not (tmp_path / "w.pt").exists() and not (tmp_path / "t.json").exists()
