"""Resume after kill -9: a training subprocess is really SIGKILLed after its first checkpoint,
started again with the same command, and must end with weights and metrics bit-identical to an
uninterrupted run (CPU)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.test_ddp import tiny_config
from tsdcls.dcls.checkpoint import CHECKPOINT_NAME
from tsdcls.dcls.train import RunSpec, train_run

TIMING_KEYS = {"train_seconds", "step_time_ms"}


def _cli(config: dict, spec: RunSpec, out: Path, checkpoint_dir: Path) -> list[str]:
    params = {"family": spec.family, "variant": spec.variant, "kernel_count": spec.kernel_count,
              "dks": spec.dks, "checkpoint_dir": str(checkpoint_dir)}
    return [
        sys.executable, "-m", "tsdcls.cli", "dcls-train", "--config", json.dumps(config),
        "--seed", str(spec.seed), "--threads", "1", "--device", "cpu",
        f"--output=weights={out / 'weights.pt'}", f"--output=train={out / 'train.json'}",
        *[f"--param={k}={json.dumps(v)}" for k, v in params.items()],
    ]


def _assert_same_weights(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ after resume: {different[:5]}"


def test_sigkill_after_first_checkpoint_then_resume_is_bit_identical(tmp_path: Path) -> None:
    config = tiny_config(train_size=128, epochs=6, batch_size=32)
    config["train"]["ema_decay"] = 0.9  # the EMA state must survive the kill too
    spec = RunSpec("convnext", "dcls_v0", 4, 5, seed=7)
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = _cli(config, spec, out, ckpt)

    victim = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 240
    while not (ckpt / CHECKPOINT_NAME).exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL, "the run finished before it could be killed: make it longer"
    assert not (out / "weights.pt").exists() and not (out / "train.json").exists()

    resumed = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert resumed.returncode == 0, resumed.stderr[-4000:]
    assert "resumed convnext/dcls_v0/k4_d5/seed7" in resumed.stderr
    assert "at epoch 0 " not in resumed.stderr  # it continued, it did not start over

    torch.set_num_threads(1)
    reference = train_run(config, spec, "cpu", checkpoint_dir=None)
    saved = torch.load(out / "weights.pt", map_location="cpu", weights_only=False)
    _assert_same_weights(reference.model.state_dict(), saved["model"])
    _assert_same_weights(reference.ema.state_dict(), saved["ema"])
    record = json.loads((out / "train.json").read_text())
    expected = json.loads(json.dumps(reference.record))
    for key in set(expected) - TIMING_KEYS:
        assert record[key] == expected[key], key
    assert record["steps"] == 6 * 4


def test_resume_inside_an_epoch_matches_uninterrupted(tmp_path: Path) -> None:
    """A mid-epoch checkpoint (checkpoint_every_steps) resumes at the right batch of the epoch."""
    config = tiny_config(train_size=96, epochs=2, batch_size=32)
    config["train"].update(checkpoint_every_steps=2, mixup=0.8, cutmix=1.0, label_smoothing=0.1)
    spec = RunSpec("convnext", "dcls_gauss", 4, 5, seed=1)
    torch.set_num_threads(1)
    reference = train_run(config, spec, "cpu", checkpoint_dir=None)
    stopped = train_run(config, spec, "cpu", checkpoint_dir=tmp_path, max_steps=3)
    state = torch.load(tmp_path / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 2, 2)
    assert stopped.record["steps"] == 3
    resumed = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    _assert_same_weights(reference.model.state_dict(), resumed.model.state_dict())
    assert resumed.record["history"] == reference.record["history"]


def test_checkpoint_of_another_config_is_ignored(tmp_path: Path) -> None:
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    spec = RunSpec("convnext", "dense", 0, 0, seed=0)
    torch.set_num_threads(1)
    first = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    config["train"]["lr"] = 1e-3  # a new config must retrain, not reuse the old checkpoint
    second = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    assert second.record["steps"] == first.record["steps"] == 2
    assert not torch.equal(first.model.head.fc.weight, second.model.head.fc.weight)
