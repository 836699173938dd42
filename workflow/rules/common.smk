# Parse-time logic only: schema validation, offline switches, and every helper function the rule
# files use (Snakemake's linter wants functions and rules apart). No science code here.
import json
import os
import shlex

from snakemake.utils import validate

from tsdcls.tempscale.ablation import SLUG_PATTERN as TEMPSCALE_SLUG_PATTERN
from tsdcls.tempscale.ablation import model_slugs as tempscale_model_slugs
from tsdcls.tempscale.ablation import variant_slugs as tempscale_variant_slugs

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
            f"resource kind {kind!r} asked for by {rule_name!r} is unknown; config key "
            f"'resources.defaults' has {sorted(settings['defaults'])}"
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


# --- DCLS stage (workflow/rules/dcls.smk) ---------------------------------------------------
DCLS = config["dcls"]
DCLS_RUN = "results/dcls/runs/{family}/{variant}/k{kernel_count}_d{dks}/seed{seed}"
DCLS_STEM = "{family}_{variant}_k{kernel_count}_d{dks}_seed{seed}"
DCLS_TRAIN_KIND = "gpu" if config["device"].startswith("cuda") else "cpu"


def dcls_cells() -> list[dict]:
    """The grid, deduplicated: dense ignores kernel_count/dks (recorded as 0)."""
    cells = {}
    for entry in DCLS["grid"]:
        if entry["family"] not in DCLS["families"]:
            raise ValueError(f"config key 'dcls.grid': family {entry['family']!r} is not in dcls.families")
        for variant in entry["variants"]:
            for kernel_count in entry.get("kernel_counts", [1]):
                for dks in entry.get("dks", [1]):
                    k, d = (0, 0) if variant == "dense" else (kernel_count, dks)
                    cells[(entry["family"], variant, k, d)] = None
    return [dict(family=f, variant=v, kernel_count=k, dks=d) for f, v, k, d in cells]


def dcls_runs(name: str) -> list[str]:
    """One file `name` per grid cell and seed."""
    pattern = f"{DCLS_RUN}/{name}"
    return [pattern.format(seed=seed, **cell) for cell in dcls_cells() for seed in DCLS["seeds"]]


def dcls_io(wildcards, input, output) -> str:
    """Named files plus the grid wildcards and the checkpoint directory as --param values."""
    params = {
        "family": wildcards.family, "variant": wildcards.variant,
        "kernel_count": int(wildcards.kernel_count), "dks": int(wildcards.dks),
        "checkpoint_dir": dcls_checkpoint_dir(wildcards),
    }
    extra = " ".join(f"--param {k}={shlex.quote(json.dumps(v))}" for k, v in params.items())
    return f"{job_io(wildcards, input, output)} {extra}"


def dcls_checkpoint_dir(wildcards) -> str:
    """One resumable checkpoint folder per run (a param: it survives a failed or killed job)."""
    return f"{DCLS['checkpoint_dir']}/{DCLS_STEM.format(**wildcards)}"


def dcls_launch(verb: str) -> str:
    """torchrun with one process per GPU the job's resources request; plain python on CPU."""
    command = tsdcls(verb, "dcls", seed="{wildcards.seed}")
    if "python -m tsdcls.cli" not in command:
        raise ValueError("dcls_launch: tsdcls() no longer starts with 'python -m tsdcls.cli'; update it")
    runner = (
        'if [ "{resources.gpus}" -ge 1 ] 2>/dev/null; then '
        'LAUNCH="torchrun --standalone --nproc_per_node={resources.gpus}"; else LAUNCH=python; fi; '
    )
    return runner + command.replace("python -m tsdcls.cli", "$LAUNCH -m tsdcls.cli", 1)


# --- TempScale stage (workflow/rules/tempscale.smk) -----------------------------------------
TEMPSCALE_EVAL = "results/tempscale/eval/{model}/{variant}"
TEMPSCALE_MTEB_CACHE = "results/tempscale/mteb"


def tempscale_grid() -> list[tuple[str, str]]:
    if not enabled("tempscale"):
        return []
    return [(m, v) for m in tempscale_model_slugs(config["tempscale"]) for v in tempscale_variant_slugs(config["tempscale"])]


def tempscale_eval_io(wildcards, input, output) -> str:
    """job_io plus the job's model, variant and mteb cache folder as --param values."""
    extra = {"model": wildcards.model, "variant": wildcards.variant, "mteb_cache": TEMPSCALE_MTEB_CACHE}
    params = " ".join(f"--param {k}={shlex.quote(json.dumps(v))}" for k, v in extra.items())
    return f"{job_io(wildcards, input, output)} {params}"


def tempscale_eval_inputs(wildcards) -> dict[str, str]:
    """scores_i / per_item_i for every (model, variant) of the grid (named for job_io)."""
    files = {}
    for i, (model, variant) in enumerate(tempscale_grid()):
        folder = TEMPSCALE_EVAL.format(model=model, variant=variant)
        files[f"scores_{i}"] = f"{folder}/scores.csv"
        files[f"per_item_{i}"] = f"{folder}/per_item.csv"
    return files


# --- figures and tables (workflow/rules/figures.smk) ----------------------------------------
def dcls_kernel_inputs(wildcards) -> list[str]:
    """kernels.json of the runs named in dcls.figures.kernel_runs, at the first seed."""
    seed = config["dcls"]["seeds"][0]
    return [
        f"{DCLS_RUN}/kernels.json".format(seed=seed, **run)
        for run in config["dcls"]["figures"]["kernel_runs"]
    ]


PUBLISHED_NUMBERS = "data/published_numbers.yaml"


def paper_compare_inputs(wildcards) -> dict[str, str]:
    """Published numbers, plus each stage's ablation.csv when the stage is on and a rule makes it
    (a stage that is off gives "not run" cells instead of a missing-input error)."""
    inputs = {"published": PUBLISHED_NUMBERS}
    for stage in ("dcls", "tempscale"):
        path = f"{RESULTS}/{stage}/ablation.csv"
        if enabled(stage) and any(r.is_producer(path) for r in workflow.rules):
            inputs[stage] = path
    return inputs


def paper_compare_io(wildcards, input, output) -> str:
    """job_io plus the DCLS/TempScale config sections, so the table states what this run ran."""
    runs = {stage: config[stage] for stage in ("dcls", "tempscale")}
    return f"{job_io(wildcards, input, output)} --param runs={shlex.quote(json.dumps(runs, sort_keys=True))}"
