"""Show the sbatch request snakemake-executor-plugin-slurm would submit, without a cluster.

The plugin turns resources into sbatch flags by rules of its own (a GPU job gets no --ntasks,
`tasks` becomes --ntasks-per-gpu, ...), so what a profile means is only known from the plugin.
This builds the DAG the way `snakemake` does (its own argument parser, so the profile, config
files and --set-resources apply; then a dry run with the slurm executor) and calls, on the first
job of each chosen rule, the plugin's own `get_submit_command` + `set_gres_string` (what its
`run_job` joins into the sbatch call, before `--wrap`) and the jobstep plugin's CPU/GPU/node
settings of the `srun -n1` it starts inside the job. Prints one JSON object per rule.

Run in the workflow directory with snakemake's own arguments after `--`:

    python workflow/scripts/sbatch_preview.py dcls_train tempscale_evaluate -- \\
        --profile workflow/profiles/slurm --configfile workflow/presets/paper.yaml

Two parts need the cluster and are filled in as the plugin would without one: the account is
quoted as given (the plugin first checks it with `sacctmgr`, which needs the accounting
database), and an unset partition stays unset (the plugin would ask `sinfo` for the default).
"""

from __future__ import annotations

import json
import shlex
import sys
from types import SimpleNamespace
from typing import Any


def dag_jobs(snakemake_args: list[str]) -> dict[str, Any]:
    """First job of every rule in the DAG of a dry run with snakemake's CLI arguments."""
    from snakemake.api import SnakemakeApi
    from snakemake.cli import parse_args, parse_config
    from snakemake.settings.types import (
        ConfigSettings,
        DAGSettings,
        OutputSettings,
        Quietness,
        ResourceSettings,
    )

    _, args = parse_args(snakemake_args)
    if args.executor != "slurm":
        raise SystemExit(f"sbatch_preview: the arguments select executor {args.executor!r}, not slurm "
                         "(pass --profile workflow/profiles/slurm or --executor slurm)")
    from snakemake_interface_executor_plugins.registry import ExecutorPluginRegistry

    settings = ExecutorPluginRegistry().get_plugin("slurm").get_settings(args)
    resources = ResourceSettings(nodes=args.jobs or 1, overwrite_threads=args.set_threads,
                                 overwrite_resources=args.set_resources, default_resources=args.default_resources)
    config = ConfigSettings(config=parse_config(args.config), configfiles=args.configfile, config_args=args.config)
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(resource_settings=resources, config_settings=config,
                                    snakefile=args.snakefile, workdir=args.directory)
        dag_api = workflow_api.dag(DAGSettings(targets=set(args.targets), forceall=True))
        dag_api.execute_workflow(executor="slurm", pseudo_executor="dryrun", executor_settings=settings)
        jobs: dict[str, Any] = {}
        for job in sorted(workflow_api._workflow.dag.jobs, key=lambda j: j.jobid):
            jobs.setdefault(job.rule.name, job)
    return {"settings": settings, "jobs": jobs}


def sbatch_request(job: Any, settings: Any) -> dict[str, Any]:
    """The plugin's sbatch call (flags up to --wrap) and the jobstep's srun flags for one job."""
    from snakemake_executor_plugin_slurm import Executor
    from snakemake_executor_plugin_slurm.partitions import read_partition_file
    from snakemake_executor_plugin_slurm.submit_string import get_submit_command
    from snakemake_executor_plugin_slurm.utils import set_gres_string
    from snakemake_executor_plugin_slurm_jobstep import (
        get_cpu_setting,
        get_gpu_setting,
        get_node_setting,
    )

    partitions = read_partition_file(settings.partition_config) if settings.partition_config else None
    # the plugin's own partition choice; "" as fallback = what it uses when sinfo names no default
    plugin_self = SimpleNamespace(_partitions=partitions, _fallback_partition="", logger=None)
    account = job.resources.get("slurm_account")
    params = {
        "run_uuid": "<run-uuid>", "slurm_logfile": f"{settings.logdir}/rule_{job.rule.name}/%j.log",
        "comment_str": f"rule_{job.rule.name}", "workdir": "<workdir>",
        "account": f" -A {shlex.quote(str(account))}" if account else "",
        "partition": Executor.get_partition_arg(plugin_self, job),
    }
    call = get_submit_command(job, params, settings=settings) + set_gres_string(job)
    gpu_job = bool(job.resources.get("gpu") or "gpu" in job.resources.get("gres", ""))
    step = [get_cpu_setting(job, gpu_job), get_gpu_setting(job), get_node_setting(job)]
    return {
        "sbatch": call,
        "argv": shlex.split(call),
        "srun_step": " ".join(["srun", "-n1", "--cpu-bind=q", *(part for part in step if part)]),
        "resources": {k: v for k, v in job.resources.items() if not k.startswith("_") and k != "tmpdir"},
        "threads": job.threads,
        "shellcmd": job.shellcmd,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--" not in argv or argv.index("--") == 0:
        print("usage: sbatch_preview.py RULE... -- SNAKEMAKE_ARGS...", file=sys.stderr)
        return 2
    split = argv.index("--")
    rules, snakemake_args = argv[:split], argv[split + 1:]
    found = dag_jobs(snakemake_args)
    missing = [rule for rule in rules if rule not in found["jobs"]]
    if missing:
        print(f"sbatch_preview: no job of rule(s) {', '.join(missing)} in the DAG; rules with jobs: "
              f"{', '.join(sorted(found['jobs']))}", file=sys.stderr)
        return 2
    out = {rule: sbatch_request(found["jobs"][rule], found["settings"]) for rule in rules}
    print(json.dumps(out, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
