"""A config edit reruns exactly the jobs that read the edited key, and what depends on them.

On a copy of the finished smoke run, each edit of the table below is one `--configfile` overlay;
the jobs `snakemake -n` then plans must equal the jobs it plans, on the unedited config, when the
readers named in the table are forced (`--forcerun`: those jobs plus everything downstream).
The readers are written here from what each job function reads, not from a dry run's output.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import yaml

from tests.conftest import SMOKE_PRESET, run_snakemake

# (edit as an overlay, rules whose jobs read the key, jobs added by the edit)
EDITS = {
    "dcls.evaluate.batch_size": ({"dcls": {"evaluate": {"batch_size": 77}}}, ["dcls_evaluate"], set()),
    # the paper-vs-reproduced table states the epochs of this run's setup
    "dcls.train.epochs": ({"dcls": {"train": {"epochs": 2}}}, ["dcls_train", "table_paper_vs_reproduced"], set()),
    "dcls.data.corruption_severities": (
        {"dcls": {"data": {"corruption_severities": [1]}}}, ["dcls_evaluate"], set()),
    "figures.dpi": ({"figures": {"dpi": 120}}, [
        "figure_theory_attenuation", "figure_tempscale_collapse", "figure_tempscale_passkey_needle",
        "figure_tempscale_tau_sweep", "figure_dcls_accuracy", "figure_dcls_kernels", "figure_dcls_throughput",
        "claims",  # the forest plot
        "figure_tempscale_fixes",
    ], set()),
    "tempscale.collapse.windows_per_bin": (
        {"tempscale": {"collapse": {"windows_per_bin": 5}}}, ["tempscale_collapse", "tempscale_fix_collapse"], set()),
    # a fit setting of the post-hoc fixes: the fix variants' evaluations and the fixes' collapse only
    "tempscale.ablation.fixes.fit_texts_per_bin": (
        {"tempscale": {"ablation": {"fixes": {"fit_texts_per_bin": 7}}}},
        ["results/tempscale/eval/minilm/length_center-tau1-all/scores.csv", "tempscale_fix_collapse"], set()),
    "tempscale.tasks.threads": ({"tempscale": {"tasks": {"threads": 2}}}, [], set()),
    "theory.synthetic.trials": ({"theory": {"synthetic": {"trials": 3}}}, ["theory_synthetic"], set()),
}
ADDED_TAU = 0.7


def planned_jobs(stdout: str) -> set[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run lists."""
    jobs: set[tuple[str, str]] = set()
    rule = None
    for line in stdout.splitlines():
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            if rule:
                jobs.add((rule, ""))
            rule = match.group(1)
            continue
        wildcards = re.match(r"^\s+wildcards: (.*)$", line)
        if wildcards and rule:
            jobs.add((rule, wildcards.group(1)))
            rule = None
    if rule:
        jobs.add((rule, ""))
    return jobs


def dry_run(workdir: Path, *args: str, overlay: dict | None = None) -> set[tuple[str, str]]:
    configfiles = [SMOKE_PRESET]
    if overlay is not None:
        (workdir / "edit.yaml").write_text(yaml.safe_dump(overlay))
        configfiles.append("edit.yaml")
    proc = run_snakemake(workdir, "-n", *args, configfiles=tuple(configfiles), timeout=300)
    return planned_jobs(proc.stdout)


@pytest.fixture(scope="module")
def finished(smoke_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    workdir = tmp_path_factory.mktemp("rerun") / "run"
    shutil.copytree(smoke_run, workdir, symlinks=True)
    assert dry_run(workdir) == set(), "the finished smoke run should plan nothing"
    return workdir


@pytest.mark.parametrize("key", sorted(EDITS))
def test_single_key_edit_plans_only_its_readers(finished: Path, key: str) -> None:
    overlay, readers, _ = EDITS[key]
    expected = dry_run(finished, "--forcerun", *readers) if readers else set()
    planned = dry_run(finished, overlay=overlay)
    assert planned == expected, (
        f"edit of {key}: planned but not expected {sorted(planned - expected)}; "
        f"expected but not planned {sorted(expected - planned)}"
    )


def test_added_tau_plans_only_the_new_taus_jobs_and_aggregates(finished: Path) -> None:
    preset = yaml.safe_load((finished / SMOKE_PRESET).read_text())
    base = yaml.safe_load((finished / "config.yaml").read_text())
    taus = (preset.get("tempscale", {}).get("ablation", {}).get("taus") or base["tempscale"]["ablation"]["taus"])
    models = (preset.get("tempscale", {}).get("ablation", {}).get("models") or base["tempscale"]["ablation"]["models"])
    assert ADDED_TAU not in taus
    planned = dry_run(finished, overlay={"tempscale": {"ablation": {"taus": [*taus, ADDED_TAU]}}})
    new_jobs = {("tempscale_evaluate", f"model={m}, variant=tau{ADDED_TAU:g}-all") for m in models}
    expected = new_jobs | dry_run(finished, "--forcerun", "tempscale_ablation")
    assert planned == expected, f"unexpected {sorted(planned - expected)}; missing {sorted(expected - planned)}"


def test_added_law_plans_only_its_job_and_aggregates(finished: Path) -> None:
    """A new temperature law: its evaluation, the ablation table and the fixes comparison (which
    shows every law), nothing else; the other laws' and fixes' jobs stay done."""
    preset = yaml.safe_load((finished / SMOKE_PRESET).read_text())
    laws = preset["tempscale"]["ablation"]["tau_laws"]["laws"]
    assert "power0.5" not in laws
    planned = dry_run(finished, overlay={"tempscale": {"ablation": {"tau_laws": {"laws": [*laws, "power0.5"]}}}})
    expected = {("tempscale_evaluate", "model=minilm, variant=law-power0.5-all")} | dry_run(
        finished, "--forcerun", "tempscale_ablation", "tempscale_fix_collapse")
    assert planned == expected, f"unexpected {sorted(planned - expected)}; missing {sorted(expected - planned)}"
