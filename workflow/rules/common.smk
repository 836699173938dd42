# Parse-time logic only: schema validation, offline switches, and the helpers rules use to call
# the package CLI. No science code here.
import json
import os
import shlex

from snakemake.utils import validate

validate(config, schema="../schemas/config.schema.yaml")

# Every job inherits these: hub libraries read local files only unless the config allows network.
if not config["allow_network"]:
    os.environ.update(
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        HF_HUB_DISABLE_TELEMETRY="1", TOKENIZERS_PARALLELISM="false",
    )

RESULTS = "results"
# stage -> list of final files; each stage's rule file registers its own (figures too).
TARGETS: dict[str, list[str]] = {}
# files the `figures` target regenerates (plots and tables only, never models).
FIGURE_TARGETS: list[str] = []


def enabled(stage: str) -> bool:
    return bool(config[stage]["enabled"])


def all_targets() -> list[str]:
    """Final files of every enabled stage, plus every figure and table when figures are on."""
    paths = [path for stage, paths in TARGETS.items() if enabled(stage) for path in paths]
    return paths + (list(FIGURE_TARGETS) if enabled("figures") else [])


def stage_json(stage: str) -> str:
    """The stage's config section (plus the global seed and scale) as one JSON argument."""
    section = dict(config[stage])
    section.setdefault("seed", config["seed"])
    section.setdefault("scale", config["scale"])
    return json.dumps(section, sort_keys=True)


def tsdcls(verb: str, stage: str, seed=None) -> str:
    """Shell command for one CLI verb: named inputs/outputs come from params.io (see job_io)."""
    seed_arg = config["seed"] if seed is None else seed
    network = " --allow-network" if config["allow_network"] else ""
    config_arg = shlex.quote(stage_json(stage)).replace("{", "{{").replace("}", "}}")
    return (
        f"python -m tsdcls.cli {verb} --config {config_arg}"
        f" --seed {seed_arg} --threads {{threads}} --device {config['device']}{network}"
        " {params.io} > {log} 2>&1"
    )


def job_io(wildcards, input, output) -> str:
    """`--input name=path --output name=path` for every named file of the rule."""
    parts = [f"--input {k}={shlex.quote(str(v))}" for k, v in input.items()]
    parts += [f"--output {k}={shlex.quote(str(v))}" for k, v in output.items()]
    return " ".join(parts)


def log_path(rule_name: str, stem: str = "job") -> str:
    return f"{RESULTS}/logs/{rule_name}/{stem}.log"


def bench_path(rule_name: str, stem: str = "job") -> str:
    return f"{RESULTS}/benchmarks/{rule_name}/{stem}.tsv"


# --- cluster resources (owner: SLURM profile; docs/slurm.md) --------------------------------
def rule_resources(rule_name: str, kind: str = "cpu") -> dict:
    """Resources of one rule, named as snakemake-executor-plugin-slurm reads them.

    Defaults by kind (cpu: evaluation/analysis, gpu: training), then config overrides for the
    rule, then the cluster-wide settings of resources.slurm. Unset (empty) settings are left
    out, so `--default-resources` can fill them; `--set-resources` overrides any of them.
    """
    settings = config["resources"]
    if kind not in settings["defaults"]:
        raise ValueError(
            f"rule {rule_name!r}: resource kind {kind!r} unknown; config key 'resources.defaults' "
            f"has {sorted(settings['defaults'])}"
        )
    res = dict(settings["defaults"][kind])
    res.update(settings["rules"].get(rule_name, {}))
    cluster = settings["slurm"]
    partition = (cluster.get("gpu_partition") if kind == "gpu" else "") or cluster.get("partition")
    for key, fallback in (("slurm_partition", partition), ("slurm_account", cluster.get("account")),
                          ("qos", cluster.get("qos"))):
        res[key] = res.get(key) or fallback
    gpus = int(res.get("gpus", 0))
    gpu_type = res.pop("gpu_type", "") or cluster.get("gpu_type", "")
    if gpus > 0:
        # the plugin turns `gres` into --gres=... and `gpu`/`gpu_model` into --gpus=[model:]N
        if cluster.get("gpu_request", "gres") == "gpus":
            res["gpu"] = gpus
            if gpu_type:
                res["gpu_model"] = gpu_type
        else:
            res["gres"] = f"gpu:{gpu_type}:{gpus}" if gpu_type else f"gpu:{gpus}"
    return {key: value for key, value in res.items() if value not in ("", None)}
