"""The SLURM profile on a real single-node SLURM cluster started by tests/slurm/cluster.sh.

Every job of the smoke DAG (whatever jobs it has) must run as a SLURM job through
`--profile workflow/profiles/slurm`, and every result file must hold the same numbers as the
local run of the `smoke_run` fixture (provenance timestamps, hosts and timings aside). Skips
with the reason when the Debian SLURM/munge packages or root are missing; CI installs them.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import (
    PAPER_PRESET,
    REPO,
    SMOKE_PRESET,
    SUMMARY_LINES,
    copy_workflow,
    paper_data_overlay,
    snakemake_cmd,
    workflow_env,
)

CLUSTER_SCRIPT = REPO / "tests" / "slurm" / "cluster.sh"
SUBREAPER = REPO / "tests" / "slurm" / "subreaper.py"
PROFILE = "workflow/profiles/slurm"
# Hard bound for start + whole smoke DAG on SLURM + stop (a loaded machine can take minutes more).
RUN_TIMEOUT_S = int(os.environ.get("TSDCLS_SLURM_TEST_TIMEOUT", "1500"))
# Targets of the SLURM run, space-separated; empty: the whole smoke DAG (what CI runs).
TARGETS = os.environ.get("TSDCLS_SLURM_TEST_TARGETS", "").split()
# Our cluster has no slurmdbd, so `sacct` fails: status comes from `squeue`, which sees
# finished jobs for MinJobAge seconds. The plugin silently goes back to sacct unless MinJobAge
# >= 3 x init seconds, so cluster.sh sets MinJobAge=600 and we poll every 2 s.
INIT_SECONDS = 2
TEST_ONLY_FLAGS = (
    "--slurm-status-command", "squeue",
    "--slurm-init-seconds-before-status-checks", str(INIT_SECONDS),
    "--seconds-between-status-checks", str(INIT_SECONDS),
    # no accounting database, hence no accounts (plugin 2.8.0 ignores this flag; with no account
    # configured it asks sacct for one, gets none, and submits without -A)
    "--slurm-no-account",
)
# The test node has few CPUs: let two 1-CPU jobs share it instead of queueing behind each other.
SMALL_JOBS = {"resources": {"defaults": {
    "cpu": {"mem_mb": 1000, "cpus_per_task": 1, "gpus": 0},
    "gpu": {"mem_mb": 1000, "cpus_per_task": 1, "gpus": 0},
}}}

STARTED = re.compile(r"cluster.sh: started (\w+) pid (\d+)")
SUBMITTED = re.compile(r"Job (\d+) has been submitted with SLURM jobid (\d+) \(log: (.+?)\)\.")
JOB_BLOCK = re.compile(
    r"^(localrule|rule|checkpoint|localcheckpoint) (\w+):\n(?:[ \t]+\w+:.*\n)*?[ \t]+jobid: (\d+)$",
    re.MULTILINE,
)
QUEUE_LINE = re.compile(r"^(\d+)\|([A-Z_]+)$", re.MULTILINE)

# Fields that legitimately differ between two runs of the same job (wall clock, machine).
VOLATILE_KEY = re.compile(
    r"(^|_)(provenance|time|times|timestamp|date|seconds|secs|sec|ms|elapsed|duration|runtime|"
    r"wall|started_at|finished_at|host|hostname|throughput|latency|speed|fps|per_second|per_sec|per_s|"
    r"kg_co2_emissions|evaluation_phases)($|_)",
    re.IGNORECASE,
)
# Table columns and whole plots that show timings (throughput, step time) rather than results.
TIMING_HEADER = re.compile(r"img/s|/s\b|\(ms\)|\(s\)|seconds|time|throughput|latency|speed", re.IGNORECASE)
TIMING_FILE = re.compile(r"throughput|speed|timing", re.IGNORECASE)
IGNORED_DIRS = ("logs", "benchmarks")
# resume bookkeeping of tempscale_evaluate: it holds the sha256 of mteb's result file, whose
# timing fields differ between any two runs (the result files themselves are compared)
IGNORED_PARTS = ("tsdcls-resume",)
REL_TOL, ABS_TOL = 1e-7, 1e-10


# --- comparing result trees ---------------------------------------------------------------
def result_files(results: Path) -> set[str]:
    """Result files of a run, relative to results/ (logs, benchmark timings and temp files aside)."""
    found = set()
    for path in results.rglob("*"):
        rel = path.relative_to(results)
        if path.is_file() and rel.parts[0] not in IGNORED_DIRS and not any(p.startswith(".") for p in rel.parts) \
                and not set(rel.parts) & set(IGNORED_PARTS):
            found.add(rel.as_posix())
    return found


def _same_value(a: Any, b: Any, where: str, diffs: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        keys_a = {k for k in a if not VOLATILE_KEY.search(str(k))}
        keys_b = {k for k in b if not VOLATILE_KEY.search(str(k))}
        if keys_a != keys_b:
            diffs.append(f"{where}: keys differ: {sorted(keys_a ^ keys_b)}")
        for key in sorted(keys_a & keys_b, key=str):
            _same_value(a[key], b[key], f"{where}.{key}", diffs)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            diffs.append(f"{where}: {len(a)} vs {len(b)} items")
        for i, (x, y) in enumerate(zip(a, b, strict=False)):
            _same_value(x, y, f"{where}[{i}]", diffs)
    elif isinstance(a, bool | str | None) or isinstance(b, bool | str | None):
        if a != b:
            diffs.append(f"{where}: {a!r} != {b!r}")
    elif isinstance(a, int | float) and isinstance(b, int | float):
        both_nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
        if not both_nan and not math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL):
            diffs.append(f"{where}: {a!r} != {b!r}")
    elif a != b:
        diffs.append(f"{where}: {a!r} != {b!r}")


def _csv_records(path: Path) -> dict[str, list]:
    from tsdcls.common.io import read_csv

    frame = read_csv(path)
    return {str(col): frame[col].tolist() for col in frame.columns if not VOLATILE_KEY.search(str(col))}


def _text_without_provenance(path: Path) -> list[str]:
    """Lines of a text file, provenance comments out and the cells of timing columns blanked.

    A table row is a line with `|` (Markdown) or `&` (LaTeX) cells; a row naming a timing column
    (img/s, step (ms), ...) marks that column, and later rows with as many cells get it blanked.
    """
    lines, masked, width = [], set(), -1
    for line in path.read_text(encoding="utf-8").splitlines():
        if "provenance" in line:
            continue
        sep = "|" if "|" in line else "&" if "&" in line else None
        if sep is None:
            lines.append(line)
            continue
        cells = line.split(sep)
        timing = {i for i, cell in enumerate(cells) if TIMING_HEADER.search(cell)}
        if timing:
            masked, width = timing, len(cells)
        elif len(cells) == width:
            cells = ["<timing>" if i in masked else cell for i, cell in enumerate(cells)]
        else:
            masked, width = set(), -1
        lines.append(sep.join(cells))
    return lines


def _tensors(path: Path) -> Any:
    import numpy as np
    import torch

    def plain(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        if isinstance(value, np.ndarray):
            return value.astype(float).ravel().tolist() if value.dtype.kind in "biuf" else value.ravel().tolist()
        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, dict):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    return plain(torch.load(path, map_location="cpu", weights_only=False))


def compare_file(local: Path, remote: Path, rel: str) -> list[str]:
    """Differences in the numeric/text content of one result file (empty list: the same)."""
    diffs: list[str] = []
    suffix = local.suffix.lower()
    if suffix in (".png", ".pdf") and TIMING_FILE.search(local.name):
        pass  # a plot of measured speed: differs run to run by design
    elif suffix == ".json":
        _same_value(json.loads(local.read_text()), json.loads(remote.read_text()), rel, diffs)
    elif suffix == ".csv":
        _same_value(_csv_records(local), _csv_records(remote), rel, diffs)
    elif suffix in (".yaml", ".yml"):
        _same_value(yaml.safe_load(local.read_text()), yaml.safe_load(remote.read_text()), rel, diffs)
    elif suffix == ".png":
        import numpy as np
        from PIL import Image

        with Image.open(local) as a, Image.open(remote) as b:
            if a.size != b.size or not np.array_equal(np.asarray(a), np.asarray(b)):
                diffs.append(f"{rel}: pixels differ")
    elif suffix == ".pdf":
        pass  # vector twin of the PNG; its bytes carry creation dates
    elif suffix in (".pt", ".pth", ".ckpt"):
        if local.read_bytes() != remote.read_bytes():
            _same_value(_tensors(local), _tensors(remote), rel, diffs)
    else:
        try:
            if _text_without_provenance(local) != _text_without_provenance(remote):
                diffs.append(f"{rel}: text differs")
        except UnicodeDecodeError:
            if local.read_bytes() != remote.read_bytes():
                diffs.append(f"{rel}: bytes differ")
    return diffs


def compare_results(local: Path, remote: Path, partial: bool = False) -> tuple[set[str], list[str]]:
    """Files both runs wrote and every difference between them (missing files included).

    ``partial``: the SLURM run built only some targets, so files only the local run has are fine.
    """
    local_files, remote_files = result_files(local), result_files(remote)
    diffs = [] if partial else [f"only in the local run: {rel}" for rel in sorted(local_files - remote_files)]
    diffs += [f"only in the SLURM run: {rel}" for rel in sorted(remote_files - local_files)]
    for rel in sorted(local_files & remote_files):
        diffs += compare_file(local / rel, remote / rel, rel)
    return local_files & remote_files, diffs


# --- the cluster ---------------------------------------------------------------------------
def daemon_alive(pid: int, name: str) -> bool:
    """Whether ``pid`` still runs the daemon ``name`` (a reused PID of another program is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        comm = Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return False
    state = stat.rsplit(")", 1)[-1].split()[0]
    return state != "Z" and comm.startswith(name[:15])

def cluster_unavailable() -> str | None:
    """Why a local SLURM cluster cannot run here, or None when it can."""
    if shutil.which("bash") is None or shutil.which("timeout") is None:
        return "bash and coreutils timeout are needed"
    proc = subprocess.run(["bash", str(CLUSTER_SCRIPT), "check"], capture_output=True, text=True, timeout=30)
    return None if proc.returncode == 0 else (proc.stdout + proc.stderr).strip()


@pytest.fixture
def cluster_dir() -> Iterator[Path]:
    """State directory of the test cluster; the finalizer stops any daemon still running."""
    reason = cluster_unavailable()
    if reason:
        pytest.skip(f"local SLURM cluster unavailable: {reason}")
    path = Path(tempfile.mkdtemp(prefix="tsdcls-slurm-"))
    try:
        yield path
    finally:
        # cluster.sh stops the daemons itself (trap on exit); this covers a SIGKILLed script
        subprocess.run(["bash", str(CLUSTER_SCRIPT), "stop", str(path)], timeout=120, check=False)
        shutil.rmtree(path, ignore_errors=True)


def workflow_copy(dest: Path) -> Path:
    """copy_workflow plus the repository's data/ inputs when copy_workflow leaves them out."""
    workdir = copy_workflow(dest)
    if (REPO / "data").is_dir() and not (workdir / "data").exists():
        shutil.copytree(REPO / "data", workdir / "data")
    return workdir


def local_run_commit(results: Path) -> str | None:
    """The git commit the local run stamped into its files (figure footers and tables show it)."""
    from tsdcls.common.io import read_provenance

    for path in sorted(results.rglob("*.json")):
        if path.relative_to(results).parts[0] in IGNORED_DIRS:
            continue
        try:
            commit = read_provenance(path).get("git_commit")
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
        if commit:
            return str(commit)
    return None


# the default driver: snakemake, then the state of every job SLURM still knows
LIST_JOBS_AFTER = ("bash", "-c", '"$@"; rc=$?; echo "== squeue =="; squeue --states=all -h -o "%i|%T"; exit $rc',
                   "run-then-list")


def run_on_slurm(workdir: Path, cluster: Path, commit: str | None = None, targets: list[str] = TARGETS,
                 overlay: dict = SMALL_JOBS, driver: tuple[str, ...] = LIST_JOBS_AFTER) -> tuple[int, str]:
    """Snakemake with the SLURM profile (the smoke preset + ``overlay``) under ``driver``, on a
    fresh cluster; the driver prints `squeue` of every job after `== squeue ==`.

    Output goes to a file, not a pipe: a job step that outlived a killed run must not keep the
    test waiting for end-of-file. Returns the exit status and the output.
    """
    (workdir / "slurm-test.yaml").write_text(yaml.safe_dump(overlay))
    snakemake = [*snakemake_cmd(), *targets, "--profile", PROFILE, *TEST_ONLY_FLAGS,
                 "--configfile", SMOKE_PRESET, "slurm-test.yaml"]
    # timeout TERMs first (cluster.sh then stops snakemake, cancels jobs, stops the daemons) and
    # KILLs a minute later; the subreaper reaps the job steps slurmd leaves behind
    cmd = ["timeout", "-k", "60", str(RUN_TIMEOUT_S), sys.executable, str(SUBREAPER),
           "bash", str(CLUSTER_SCRIPT), "run", str(cluster), *driver, *snakemake]
    env = workflow_env() | {"PYTHON": sys.executable}
    if commit:  # the same stamp as the local run, even when HEAD moved in between
        env["TSDCLS_GIT_COMMIT"] = commit
    log = workdir / "slurm-run.log"
    with open(log, "w") as handle:
        proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            code = proc.wait(timeout=RUN_TIMEOUT_S + 120)
        except subprocess.TimeoutExpired:  # pragma: no cover - timeout -k fires first
            proc.kill()
            code = proc.wait()
    return code, log.read_text(errors="replace")


@pytest.mark.slurm
def test_smoke_dag_runs_as_slurm_jobs_with_local_results(
    smoke_run: Path, cluster_dir: Path, tmp_path: Path
) -> None:
    workdir = workflow_copy(tmp_path / "slurm-run")
    code, output = run_on_slurm(workdir, cluster_dir, commit=local_run_commit(smoke_run / "results"))
    timed_out = " (timed out)" if code in (124, 137) else ""
    assert code == 0, f"SLURM run failed ({code}){timed_out}:\n{output[-10000:]}"

    # every job snakemake scheduled (target rules run locally and have no command) went to SLURM
    jobs = {int(jobid): (rule, kind) for kind, rule, jobid in JOB_BLOCK.findall(output)}
    remote = {jobid: rule for jobid, (rule, kind) in jobs.items() if not kind.startswith("local")}
    assert remote, f"no job was scheduled:\n{output[-5000:]}"
    slurm_ids: dict[int, str] = {}
    for jobid, slurm_id, log in SUBMITTED.findall(output):
        slurm_ids[int(jobid)] = slurm_id  # a retried job keeps its last submission
        assert Path(log).is_file(), f"no SLURM log {log}"
    assert set(slurm_ids) == set(remote), f"jobs not submitted to SLURM: {sorted(set(remote) - set(slurm_ids))}"
    assert "results/logs/slurm/" in next(iter(SUBMITTED.findall(output)))[2]

    # ... and SLURM itself ran each to completion
    states = dict(QUEUE_LINE.findall(output.split("== squeue ==")[-1]))
    for jobid, rule in sorted(remote.items()):
        assert states.get(slurm_ids[jobid]) == "COMPLETED", f"{rule}: SLURM job {slurm_ids[jobid]} is {states.get(slurm_ids[jobid])}"
    print("SLURM job ids:", ", ".join(f"{remote[j]}={slurm_ids[j]}" for j in sorted(remote)))

    # ... and every daemon the cluster started is gone again
    daemons = STARTED.findall(output)
    assert {name for name, _ in daemons} >= {"munged", "slurmctld", "slurmd"}, output[-3000:]
    left = [f"{name} (pid {pid})" for name, pid in daemons if daemon_alive(int(pid), name)]
    assert not left, f"daemons still running after the run: {left}"

    compared, diffs = compare_results(smoke_run / "results", workdir / "results", partial=bool(TARGETS))
    assert not diffs, "SLURM results differ from the local run:\n" + "\n".join(diffs[:50])
    assert compared, "no result files to compare"
    print(f"{len(compared)} result files equal to the local run's")
    ids = sorted(int(slurm_ids[j]) for j in remote)
    SUMMARY_LINES.append(
        f"SLURM: {len(remote)} smoke jobs ran as SLURM jobs (job ids {ids[0]}-{ids[-1]}, all COMPLETED); "
        f"{len(compared)} result files equal to the local run's; daemons stopped: "
        + ", ".join(f"{name} pid {pid}" for name, pid in daemons)
    )


# --- a training job requeued by SLURM resumes from its checkpoint ------------------------------
REQUEUE_SCRIPT = REPO / "tests" / "slurm" / "requeue.sh"
REQUEUE_CELL = "convnext_dense_k0_d0_seed0"
REQUEUE_TARGET = "results/dcls/runs/convnext/dense/k0_d0/seed0/weights.pt"
# the smoke cell, 10 epochs of 8 steps (~20 steps/s here), a checkpoint every 2 steps: the first
# comes early, so the requeue lands mid-training; the trainer checkpoints again on SLURM's SIGTERM
REQUEUE_EPOCHS = 10
REQUEUE_JOBS = SMALL_JOBS | {"dcls": {"grid": [{"family": "convnext", "variants": ["dense"]}],
                                      "train": {"epochs": REQUEUE_EPOCHS, "checkpoint_every_steps": 2}}}
RESUMED = re.compile(r"resumed \S+ from (\S+) at epoch (\d+) step (\d+)")


@pytest.mark.slurm
def test_requeued_training_job_resumes_from_its_checkpoint(cluster_dir: Path, tmp_path: Path) -> None:
    """`scontrol requeue` of a running dcls_train job: SLURM restarts the same job (Restarts=1),
    Snakemake keeps waiting, and the second attempt resumes where the first one stopped."""
    workdir = workflow_copy(tmp_path / "requeue")
    checkpoint = f"results/dcls/checkpoints/{REQUEUE_CELL}/last.pt"
    rule_log = f"results/logs/dcls_train/{REQUEUE_CELL}.log"
    code, output = run_on_slurm(workdir, cluster_dir, targets=[REQUEUE_TARGET], overlay=REQUEUE_JOBS,
                                driver=("bash", str(REQUEUE_SCRIPT), checkpoint, rule_log))
    assert code == 0, f"SLURM run failed ({code}):\n{output[-10000:]}"
    submitted = SUBMITTED.findall(output)
    assert len(submitted) == 1, f"one submission expected (SLURM requeues, Snakemake does not resubmit): {submitted}"
    slurm_id = submitted[0][1]
    assert f"requeue.sh: requeued SLURM job {slurm_id}" in output, output[-5000:]
    # one task in the allocation and in the step that runs the rule, before and after the requeue
    assert f"SLURM job {slurm_id} runs: NumTasks=1 step tasks=1" in output, output[-5000:]
    assert f"SLURM job {slurm_id}: JobState=COMPLETED Restarts=1 NumTasks=1" in output, output[-5000:]

    first = (workdir / f"{rule_log}.attempt1").read_text(errors="replace")
    second = (workdir / rule_log).read_text(errors="replace")
    assert "dcls-train: stopped by SIGTERM" in first, f"the first attempt did not stop on SIGTERM:\n{first[-3000:]}"
    assert not RESUMED.search(first), f"the first attempt resumed from something:\n{first[-3000:]}"
    resumed = RESUMED.search(second)
    assert resumed, f"the requeued attempt did not resume from a checkpoint:\n{second[-3000:]}"
    epoch, step = int(resumed.group(2)), int(resumed.group(3))
    assert (epoch, step) > (0, 0) and epoch < REQUEUE_EPOCHS, resumed.group(0)
    from tsdcls.common.io import read_json

    record = read_json(workdir / REQUEUE_TARGET.replace("weights.pt", "train.json"))
    assert (workdir / REQUEUE_TARGET).is_file() and len(record["history"]) == REQUEUE_EPOCHS, record["history"]
    smoke = yaml.safe_load((REPO / SMOKE_PRESET).read_text())["dcls"]
    steps_per_epoch = smoke["data"]["train_size"] // smoke["train"]["batch_size"]
    assert record["steps"] == REQUEUE_EPOCHS * steps_per_epoch, record["steps"]
    assert 0 < epoch * steps_per_epoch + step < record["steps"], resumed.group(0)
    print(f"SLURM requeue: job {slurm_id} requeued, Restarts=1, {resumed.group(0)}")
    SUMMARY_LINES.append(f"SLURM requeue: job {slurm_id} requeued mid-training, restarted by SLURM (Restarts=1, "
                         f"NumTasks=1) and {resumed.group(0)}; {REQUEUE_EPOCHS} epochs in train.json")


# --- the comparison itself must be able to fail ----------------------------------------------
def test_comparison_sees_a_changed_number_but_not_provenance(tmp_path: Path) -> None:
    import pandas as pd

    from tsdcls.common.io import write_csv, write_json, write_table

    local, remote = tmp_path / "local", tmp_path / "remote"
    frame = pd.DataFrame({"n": [8, 16], "gain": [0.5, 0.25], "seconds": [1.0, 2.0]})
    table = "| Variant | Top-1 (%) | img/s |\n|---|---|---|\n| dense | {top1} | {speed} |\n"
    for root, host, seconds in ((local, "a", [1.0, 2.0]), (remote, "b", [3.0, 4.0])):
        write_csv(root / "theory/gain.csv", frame.assign(seconds=seconds), {"host": host})
        write_json(root / "theory/checks.json", {"ok": True, "max": 0.1, "evaluation_time": seconds[0]}, {"host": host})
        write_table(root / "tables/t.md", table.format(top1="52.0", speed=seconds[0]), {"host": host})
        write_json(root / "logs/x.json", {"ignored": host}, {})
    compared, diffs = compare_results(local, remote)
    assert compared == {"theory/gain.csv", "theory/checks.json", "tables/t.md"} and diffs == []

    write_csv(remote / "theory/gain.csv", frame.assign(gain=[0.5, 0.2500001]), {"host": "b"})
    write_table(remote / "tables/t.md", table.format(top1="52.1", speed=1.0), {"host": "b"})
    write_json(remote / "extra.json", {}, {})
    _, diffs = compare_results(local, remote)
    assert any("gain" in d for d in diffs) and "only in the SLURM run: extra.json" in diffs
    assert "tables/t.md: text differs" in diffs


def test_profile_dry_runs_with_default_and_paper_config(tmp_path: Path) -> None:
    """`--profile workflow/profiles/slurm -n` builds the DAG (no cluster needed)."""
    workdir = workflow_copy(tmp_path / "dry")
    env = workflow_env()
    for configfiles in ((), (PAPER_PRESET, paper_data_overlay(workdir))):
        cmd = [*snakemake_cmd(), "--profile", PROFILE, "-n"]
        if configfiles:
            cmd += ["--configfile", *configfiles]
        proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]


def test_resources_reach_sbatch_names(tmp_path: Path) -> None:
    """Partition, account, QoS and GPU model from config become the plugin's resource names."""
    workdir = workflow_copy(tmp_path / "res")
    overlay = {"device": "cuda", "resources": {  # GPUs with device: cpu stop the run at parse time
        "slurm": {"partition": "batch", "account": "proj7", "qos": "high", "gpu_type": "a100"},
        "rules": {"theory_synthetic": {"gpus": 2, "slurm_partition": "gpu", "runtime": 77}},
    }}
    (workdir / "res.yaml").write_text(yaml.safe_dump(overlay))
    cmd = [*snakemake_cmd(), "--profile", PROFILE, "-n", "-p", "--configfile", SMOKE_PRESET, "res.yaml",
           "--set-resources", "theory_checks:slurm_partition=short"]
    proc = subprocess.run(cmd, cwd=workdir, env=workflow_env(), capture_output=True, text=True, timeout=300)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output[-4000:]
    blocks = {rule: body for rule, body in re.findall(r"^rule (\w+):\n((?:[ \t]+.*\n)+)", output, re.MULTILINE)}
    synthetic = blocks["theory_synthetic"]
    for expected in ("gres=gpu:a100:2", "slurm_partition=gpu", "runtime=77", "slurm_account=proj7", "qos=high"):
        assert expected in synthetic, synthetic
    assert "slurm_partition=short" in blocks["theory_checks"]
    assert "gres=" not in blocks["theory_checks"] and "slurm_partition=batch" in blocks["theory_real_attention"]

