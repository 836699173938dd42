"""Resume after kill -9: a training subprocess is really SIGKILLed after its first checkpoint,
started again with the same command, and must end with weights and metrics bit-identical to an
uninterrupted run (CPU)."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from tests.test_dcls_data import imagefolder  # noqa: F401  (fixture: tiny ImageNet-style tree)
from tests.test_ddp import tiny_config
from tsdcls.dcls.checkpoint import CHECKPOINT_NAME, PREVIOUS_NAME
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


def test_checkpoint_of_another_config_is_kept_aside_and_retrained(tmp_path: Path, caplog) -> None:
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    spec = RunSpec("convnext", "dense", 0, 0, seed=0)
    torch.set_num_threads(1)
    first = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    assert (tmp_path / CHECKPOINT_NAME).exists()
    config["train"]["lr"] = 1e-3  # a new trajectory must retrain, not reuse the old checkpoint
    with caplog.at_level(logging.WARNING, logger="tsdcls.dcls.checkpoint"):
        second = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    assert second.record["steps"] == first.record["steps"] == 2
    assert not torch.equal(first.model.head.fc.weight, second.model.head.fc.weight)
    # the finished run is moved aside under its own identity, and the warning names both hashes
    old, new = first.record["identity"], second.record["identity"]
    kept = torch.load(tmp_path / f"last.{old}.pt", map_location="cpu", weights_only=False)
    assert torch.equal(kept["model"]["head.fc.weight"], first.model.head.fc.weight)
    assert any(old in r.getMessage() and new in r.getMessage() for r in caplog.records)


def test_finished_checkpoint_survives_edits_off_the_trajectory(tmp_path: Path, caplog) -> None:
    """Loader workers, checkpoint cadence and evaluation-only data keys do not retrain a run."""
    config = tiny_config(train_size=64, epochs=1, batch_size=32)
    spec = RunSpec("convnext", "dense", 0, 0, seed=0)
    torch.set_num_threads(1)
    with caplog.at_level(logging.INFO, logger="tsdcls.dcls.train"):
        first = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    assert any("epoch 1/1: loss" in r.getMessage() and "img/s" in r.getMessage() for r in caplog.records)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    config["train"].update(num_workers=2, checkpoint_every_steps=1)
    config["data"].update(corruptions=["contrast"], corruption_severities=[3], val_size=32)
    again = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    assert again.record["identity"] == first.record["identity"]
    assert again.record["history"] == first.record["history"]
    assert torch.equal(again.model.head.fc.weight, first.model.head.fc.weight)
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before  # resumed as finished: not rewritten
    assert again.record["step_time_ms"] == first.record["step_time_ms"] > 0  # timing kept for the tables
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_NAME]


def test_truncated_checkpoint_is_moved_aside_and_the_previous_one_resumes(tmp_path: Path, caplog) -> None:
    config = tiny_config(train_size=64, epochs=3, batch_size=32)
    spec = RunSpec("convnext", "dcls_v0", 4, 5, seed=2)
    torch.set_num_threads(1)
    reference = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    last, prev = tmp_path / CHECKPOINT_NAME, tmp_path / PREVIOUS_NAME
    assert torch.load(prev, map_location="cpu", weights_only=False)["epoch"] == 2
    last.write_bytes(last.read_bytes()[:5000])  # the end of a killed copy or a full disk
    with caplog.at_level(logging.INFO):
        resumed = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(last) in w and "unreadable" in w for w in warnings), warnings
    assert (tmp_path / "last.corrupt.pt").read_bytes() and "at epoch 2 step 0" in caplog.text
    assert resumed.record["steps"] == reference.record["steps"] == 6
    assert resumed.record["history"] == reference.record["history"]
    _assert_same_weights(reference.model.state_dict(), resumed.model.state_dict())
    # both checkpoints unreadable: start over, with the same result
    for path in (last, prev):
        path.write_bytes(b"PK\x03\x04 not a whole zip")
    again = train_run(config, spec, "cpu", checkpoint_dir=tmp_path)
    _assert_same_weights(reference.model.state_dict(), again.model.state_dict())
    assert {"last.corrupt.1.pt", "prev.corrupt.pt"} <= {p.name for p in tmp_path.iterdir()}


def test_sigterm_stops_the_trainer_with_a_checkpoint_and_no_outputs(tmp_path: Path) -> None:
    """SIGTERM (what Snakemake and SLURM send): exit 143 soon, a resumable checkpoint, no outputs."""
    config = tiny_config(train_size=128, epochs=50, batch_size=32)
    spec = RunSpec("convnext", "dense", 0, 0, seed=5)
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(_cli(config, spec, out, ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env)
    deadline = time.monotonic() + 240
    while not (ckpt / CHECKPOINT_NAME).exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)
    victim.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    _, stderr = victim.communicate(timeout=60)
    assert victim.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert time.monotonic() - sent < 20, "the trainer did not stop at the next step"
    assert "stopped by SIGTERM; no final output written" in stderr
    assert not out.exists() or not any(out.iterdir())  # no weights.pt, train.json or temp file
    state = torch.load(ckpt / CHECKPOINT_NAME, map_location="cpu", weights_only=False)
    assert 0 < state["global_step"] < 50 * 4 and not state["finished"]


def test_sigterm_to_the_process_group_with_loader_workers(tmp_path: Path, imagefolder: Path) -> None:  # noqa: F811
    """Killing the job's process group also kills the DataLoader workers: still a clean stop."""
    config = tiny_config(epochs=100, batch_size=8)
    config["data"] = {"dataset": "imagefolder", "root": str(imagefolder), "image_size": 32}
    config["train"].update(num_workers=1, flip=False, crop_padding=0)
    spec = RunSpec("convnext", "dense", 0, 0, seed=1)
    out, ckpt = tmp_path / "run", tmp_path / "ckpt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    victim = subprocess.Popen(_cli(config, spec, out, ckpt), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              text=True, env=env, start_new_session=True)
    deadline = time.monotonic() + 240
    while not (ckpt / CHECKPOINT_NAME).exists() and victim.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # inside the next epoch, workers running
    os.killpg(victim.pid, signal.SIGTERM)
    _, stderr = victim.communicate(timeout=60)
    assert victim.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "stopped by SIGTERM" in stderr
    assert not out.exists() or not any(out.iterdir())
    assert torch.load(ckpt / CHECKPOINT_NAME, map_location="cpu", weights_only=False)["global_step"] > 0
