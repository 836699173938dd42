"""The paper preset's sbatch requests, as snakemake-executor-plugin-slurm itself builds them.

workflow/scripts/sbatch_preview.py builds the DAG like `snakemake --profile workflow/profiles/slurm`
(Snakemake's own argument parser and API) and calls the plugin's own command construction on
real jobs; no cluster is needed. The expected numbers are read from workflow/presets/paper.yaml.
The point besides GPUs, CPUs, memory, time, partition/account/QoS: a GPU job must hold ONE task,
so that `torchrun --nproc_per_node=N` starts once with N processes, not once per GPU (with
`tasks` set, the plugin asks for --ntasks-per-gpu, i.e. N tasks: the known pitfall).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PAPER_PRESET, REPO, copy_workflow, paper_data_overlay, workflow_env

PREVIEW = "workflow/scripts/sbatch_preview.py"
RULES = ("dcls_train", "tempscale_evaluate")
CLUSTER = {"partition": "cpu", "gpu_partition": "gpu", "account": "proj7", "qos": "normal", "gpu_type": "a100"}


def preview(workdir: Path, *snakemake_args: str) -> dict[str, Any]:
    cmd = [sys.executable, PREVIEW, *RULES, "--", "--profile", "workflow/profiles/slurm", *snakemake_args]
    env = workflow_env() | {"SLURM_CONF": "/dev/null"}  # no cluster: scontrol fails at once
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return json.loads(proc.stdout)


def flag(argv: list[str], name: str) -> str | None:
    """Value of an sbatch flag given as `--x=v`, `--x v` or `-x v` (None when absent)."""
    for i, arg in enumerate(argv):
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
    return None


def tasks_requested(argv: list[str], gpus: int) -> int:
    """How many tasks SLURM allocates for these flags (one node; default: one task)."""
    if flag(argv, "--ntasks-per-gpu"):
        return int(flag(argv, "--ntasks-per-gpu")) * gpus
    for name in ("--ntasks", "-n", "--ntasks-per-node"):
        if flag(argv, name):
            return int(flag(argv, name))
    return 1


@pytest.fixture(scope="module")
def paper_workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_workflow(tmp_path_factory.mktemp("sbatch"))


def paper_resources(rule: str) -> dict[str, Any]:
    """The preset's resource set for `rule`: defaults.gpu (both are GPU rules on cuda), then rules.<rule>."""
    resources = yaml.safe_load((REPO / PAPER_PRESET).read_text())["resources"]
    return dict(resources["defaults"]["gpu"]) | resources["rules"].get(rule, {})


def check_request(request: dict[str, Any], expected: dict[str, Any]) -> None:
    argv, gpus = request["argv"], expected["gpus"]
    assert gpus >= 1, "the paper preset's rule asks for no GPU"
    assert flag(argv, "--cpus-per-task") == str(expected["cpus_per_task"]), argv
    assert flag(argv, "--mem") == str(expected["mem_mb"]), argv
    assert flag(argv, "-t") == str(expected["runtime"]), argv
    assert "--requeue" in argv, "the profile's slurm-requeue must reach sbatch"
    assert tasks_requested(argv, gpus) == 1, f"{gpus} GPUs but not one task: {argv}"
    assert flag(argv, "--nodes") in (None, "1"), argv
    # inside the job the jobstep plugin starts the rule's command once, with every GPU
    assert request["srun_step"].split()[:2] == ["srun", "-n1"] and f"--gpus={gpus}" in request["srun_step"]


@pytest.mark.parametrize("gpu_request", ["gres", "gpus"])
def test_paper_gpu_rules_ask_sbatch_for_one_task_with_all_gpus(paper_workdir: Path, gpu_request: str) -> None:
    overlay = {"resources": {"slurm": CLUSTER | {"gpu_request": gpu_request}}}
    (paper_workdir / f"cluster-{gpu_request}.yaml").write_text(yaml.safe_dump(overlay))
    found = preview(paper_workdir, "--configfile", PAPER_PRESET, paper_data_overlay(paper_workdir),
                    f"cluster-{gpu_request}.yaml")
    for rule in RULES:
        expected, argv = paper_resources(rule), found[rule]["argv"]
        check_request(found[rule], expected)
        gpus = expected["gpus"]
        if gpu_request == "gres":
            assert flag(argv, "--gres") == f"gpu:a100:{gpus}" and flag(argv, "--gpus") is None, argv
        else:
            assert flag(argv, "--gpus") == f"a100:{gpus}" and flag(argv, "--gres") is None, argv
        # both are GPU rules: the GPU partition; account and QoS as configured
        assert (flag(argv, "-p"), flag(argv, "-A"), flag(argv, "--qos")) == ("gpu", "proj7", "normal"), argv
    train = found["dcls_train"]
    gpus = paper_resources("dcls_train")["gpus"]
    assert train["shellcmd"].count("torchrun") == 1 and f"--nproc_per_node={gpus}" in train["shellcmd"]


def test_paper_preset_as_shipped_leaves_cluster_names_to_the_cluster(paper_workdir: Path) -> None:
    found = preview(paper_workdir, "--configfile", PAPER_PRESET, paper_data_overlay(paper_workdir))
    for rule in RULES:
        argv = found[rule]["argv"]
        check_request(found[rule], paper_resources(rule))
        assert flag(argv, "--gres") == f"gpu:{paper_resources(rule)['gpus']}", argv
        assert not {"-p", "-A"} & set(argv) and not any(a.startswith("--qos") for a in argv), argv


def test_tasks_resource_would_start_one_task_per_gpu(paper_workdir: Path) -> None:
    """The pitfall, shown by the plugin itself: `tasks=1` on a GPU rule means one task per GPU."""
    found = preview(paper_workdir, "--configfile", PAPER_PRESET, paper_data_overlay(paper_workdir),
                    "--set-resources", "dcls_train:tasks=1")
    argv, gpus = found["dcls_train"]["argv"], paper_resources("dcls_train")["gpus"]
    assert flag(argv, "--ntasks-per-gpu") == "1" and tasks_requested(argv, gpus) == gpus > 1, argv
    with pytest.raises(AssertionError, match="not one task"):
        check_request(found["dcls_train"], paper_resources("dcls_train"))


def test_preview_names_a_rule_without_jobs(paper_workdir: Path) -> None:
    cmd = [sys.executable, PREVIEW, "no_such_rule", "--", "--profile", "workflow/profiles/slurm",
           "--configfile", PAPER_PRESET, paper_data_overlay(paper_workdir)]
    proc = subprocess.run(cmd, cwd=paper_workdir, env=workflow_env() | {"SLURM_CONF": "/dev/null"},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and re.search(r"no job of rule\(s\) no_such_rule", proc.stderr), proc.stderr
