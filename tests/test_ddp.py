"""DDP on CPU: 2 gloo processes started by the real torchrun through the CLI verb the training
rule runs, against one process with the same global batch.

Tolerance: final weights max |diff| < 1e-5. The two runs see the same images in the same
batches with the same augmentation (draws are made per global batch), so the only difference
is the order of floating-point sums (two half-batch means averaged by all-reduce vs one
full-batch mean).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tsdcls.dcls.train import RunSpec, train_run

TOLERANCE = 1e-5


def tiny_config(train_size: int = 128, epochs: int = 1, batch_size: int = 32) -> dict:
    return {
        "scale": "test",
        "families": {"convnext": {"arch": "convnext_atto", "share_positions_per_stage": True,
                                  "kwargs": {"depths": [1, 1, 1, 1], "dims": [8, 16, 32, 64], "patch_size": 2}}},
        "data": {"dataset": "fashion_mnist", "image_size": 32, "channels": 3, "train_size": train_size,
                 "val_size": 64, "corruptions": [], "corruption_severities": []},
        "train": {"epochs": epochs, "batch_size": batch_size, "lr": 3e-3, "warmup_epochs": 0.5,
                  "flip": True, "crop_padding": 2},
    }


@pytest.mark.skipif(shutil.which("torchrun", path=str(Path(sys.executable).parent)) is None,
                    reason="torchrun not installed")
@pytest.mark.slow  # a real end-to-end subprocess run (make test-fast skips it; make test runs it)
def test_ddp_two_processes_match_single_process(tmp_path: Path) -> None:
    config = tiny_config()
    spec = RunSpec("convnext", "dcls_v0", 4, 5, seed=3)
    outputs = {"weights": tmp_path / "ddp" / "weights.pt", "train": tmp_path / "ddp" / "train.json"}
    cmd = [
        str(Path(sys.executable).parent / "torchrun"), "--standalone", "--nproc_per_node=2",
        "-m", "tsdcls.cli", "dcls-train", "--config", json.dumps(config), "--seed", str(spec.seed),
        "--threads", "2", "--device", "cpu",
        *[f"--output={k}={v}" for k, v in outputs.items()],
        *[f"--param={k}={json.dumps(v)}" for k, v in
          {"family": spec.family, "variant": spec.variant, "kernel_count": spec.kernel_count, "dks": spec.dks}.items()],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    record = json.loads(outputs["train"].read_text())
    assert record["world_size"] == 2
    ddp = torch.load(outputs["weights"], map_location="cpu", weights_only=False)["model"]

    torch.set_num_threads(1)
    single = train_run(config, spec, "cpu", checkpoint_dir=None)
    assert single.record["world_size"] == 1 and single.record["steps"] == record["steps"] == 4
    reference = single.model.state_dict()
    assert set(reference) == set(ddp)
    worst = max(float((reference[k].float() - ddp[k].float()).abs().max()) for k in reference)
    print(f"DDP (2 gloo processes) vs single process: max |weight diff| = {worst:.2e}")
    assert worst < TOLERANCE, f"DDP vs single process: max |diff| {worst:.2e} >= {TOLERANCE}"
    # training moved the weights (the comparison is not between two untouched inits)
    init = train_run(config, spec, "cpu", checkpoint_dir=None, max_steps=1).model.state_dict()
    moved = max(float((reference[k].float() - init[k].float()).abs().max()) for k in reference)
    assert moved > 100 * TOLERANCE
    assert abs(single.record["final_train_loss"] - record["final_train_loss"]) < 1e-4
