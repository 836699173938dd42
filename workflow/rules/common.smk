# Parse-time logic only: schema validation, offline switches, and every helper function the rule
# files use (Snakemake's linter wants functions and rules apart). No science code here.
#
# The workflow parses with nothing but Snakemake installed: the few pure-Python helpers it needs
# (variant lists, slugs) come from this checkout's src/, which every job also gets on PYTHONPATH,
# so conda envs (which cannot install the package relative to their copied env file) still run it.
import functools
import json
import os
import shlex

import yaml
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

SRC = os.path.join(workflow.basedir, "src")
if os.path.isdir(os.path.join(SRC, "tsdcls")):
    sys.path.insert(0, SRC)
    os.environ.update(PYTHONPATH=os.pathsep.join(filter(None, [SRC, os.environ.get("PYTHONPATH")])))

from tsdcls.common.preflight import problems as preflight_problems  # noqa: E402  (stdlib-only modules)
from tsdcls.common.schema import schema_problems  # noqa: E402  (jsonschema and yaml: Snakemake's own)
from tsdcls.common.variants import DCLS_VARIANTS  # noqa: E402
from tsdcls.tempscale.ablation import SLUG_PATTERN as TEMPSCALE_SLUG_PATTERN  # noqa: E402
from tsdcls.tempscale.ablation import ablation_grid as tempscale_ablation_grid  # noqa: E402
from tsdcls.tempscale.ablation import ablation_variants as tempscale_variants  # noqa: E402
from tsdcls.tempscale.ablation import headline_tau as tempscale_headline_tau  # noqa: E402
from tsdcls.tempscale.ablation import model_slugs as tempscale_model_slugs  # noqa: E402
from tsdcls.tempscale.ablation import side_by_side_variants as tempscale_side_by_side  # noqa: E402

validate(config, schema="../schemas/config.schema.yaml")
# The claims ledger fixes the headline TempScale variant (also the tau of the fixes' TempScale combination).
CLAIMS = "data/claims.yaml"
with open(os.path.join(workflow.basedir, CLAIMS), encoding="utf-8") as _ledger:
    CLAIMS_LEDGER = yaml.safe_load(_ledger)
validate(CLAIMS_LEDGER, schema="../schemas/claims.schema.yaml")
TEMPSCALE_HEADLINE_TAU = tempscale_headline_tau(CLAIMS_LEDGER["headline_tempscale_variant"])
# Paths, model names and resource requests that can be checked now, before any job (and before
# Snakemake would remove the outputs of a job it plans to rerun).
PREFLIGHT_PROBLEMS = preflight_problems(config)
if PREFLIGHT_PROBLEMS:
    raise WorkflowError("config problems, found before any job started:\n  - " + "\n  - ".join(PREFLIGHT_PROBLEMS))

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


def job_config(stage: str, *keys: str, seed: str = "config"):
    """Params function: exactly the keys of ``config[stage]`` that the job reads, as JSON.

    Snakemake reruns a job when a param changes, so a job sees only what it reads and an edit
    reruns only its readers. Keys are dotted and may name wildcards (``families.{family}``);
    ``scale`` always comes along (provenance), the seed from config, a wildcard or not at all.
    """

    def config_for_job(wildcards) -> str:
        values = dict(wildcards.items())
        section: dict = {"scale": config["scale"]}
        if seed == "config":
            section["seed"] = config["seed"]
        elif seed == "wildcard":
            section["seed"] = int(values["seed"])
        for key in keys:
            copy_config_key(config[stage], section, key.format(**values).split("."))
        return json.dumps(section, sort_keys=True)

    return config_for_job


def theory_alpha_models() -> list[str]:
    """Every encoder whose alpha the theory stage measures: its model, then theory.real_attention.alpha_models."""
    real = config["theory"]["real_attention"]
    return list(dict.fromkeys(map(str, [real["model"], *real.get("alpha_models", [])])))


def theory_real_config(wildcards) -> str:
    """theory.real_attention plus the pinned revisions of its hub encoders (tempscale.model_revisions):
    the alpha of every alpha_models entry is measured on that revision."""
    section = json.loads(job_config("theory", "real_attention")(wildcards))
    revisions = config.get("tempscale", {}).get("model_revisions", {}) or {}
    section["model_revisions"] = {name: revisions[name] for name in theory_alpha_models() if name in revisions}
    return json.dumps(section, sort_keys=True)


def copy_config_key(source: dict, target: dict, parts: list[str]) -> None:
    """target[a][b][c] = source[a][b][c] for parts a.b.c (absent optional keys are skipped)."""
    node = source
    for part in parts:
        if not isinstance(node, dict) or part not in node:
            return
        node = node[part]
    for part in parts[:-1]:
        target = target.setdefault(part, {})
    target[parts[-1]] = node


def tsdcls(verb: str) -> str:
    """Shell command for one CLI verb: config from params.config, files from params.io (job_io).

    `exec` makes the stage function the process Snakemake waits for and kills (no orphans).
    """
    network = " --allow-network" if config["allow_network"] else ""
    return (
        f"exec python -m tsdcls.cli {verb} --config {{params.config:q}}"
        f" --threads {{threads}} --device {config['device']}{network}"
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
# Data keys that only evaluation reads: editing them never reruns (or invalidates) a training.
DCLS_EVAL_ONLY_DATA_KEYS = ("corruptions", "corruption_severities", "robustness", "robustness_size")
DCLS_TRAIN_DATA_KEYS = [f"data.{key}" for key in DCLS["data"] if key not in DCLS_EVAL_ONLY_DATA_KEYS]
# Training settings that evaluation also reads (how to run the model, not how it was trained).
DCLS_EVAL_TRAIN_KEYS = ("train.channels_last", "train.amp", "train.num_workers")
# Evaluation settings of the trained runs: the published checkpoint's path is read by its own rule only.
DCLS_EVAL_KEYS = [f"evaluate.{key}" for key in DCLS["evaluate"] if key != "official_checkpoint"]
DCLS_OFFICIAL_CHECKPOINT = DCLS["evaluate"].get("official_checkpoint")


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
    """torchrun with one process per GPU the job's resources request; without GPUs, torchrun
    with dcls.cpu_processes gloo processes, or plain python when that is 1."""
    command = tsdcls(verb)
    processes = int(DCLS["cpu_processes"])
    cpu_launch = f'"torchrun --standalone --nproc_per_node={processes}"' if processes > 1 else "python"
    runner = (
        'if [ "{resources.gpus}" -ge 1 ] 2>/dev/null; then '
        f'LAUNCH="torchrun --standalone --nproc_per_node={{resources.gpus}}"; else LAUNCH={cpu_launch}; fi; '
    )
    return runner + command.replace("exec python -m tsdcls.cli", "exec $LAUNCH -m tsdcls.cli", 1)


# --- TempScale stage (workflow/rules/tempscale.smk) -----------------------------------------
TEMPSCALE_EVAL = "results/tempscale/eval/{model}/{variant}"
TEMPSCALE_MTEB_CACHE = "results/tempscale/mteb"


def tempscale_variant_map() -> dict[str, object]:
    """slug -> TempScale variant of tempscale.ablation (one source: tsdcls.tempscale.ablation)."""
    return {v.slug: v for v in tempscale_variants(config["tempscale"], TEMPSCALE_HEADLINE_TAU)}


def tempscale_grid() -> list[tuple[str, str]]:
    """(model slug, variant slug) of every evaluation (a variant restricted to some models, such
    as the position-bias ablation, only for those)."""
    if not enabled("tempscale"):
        return []
    return [(m, v.slug) for m, v in tempscale_ablation_grid(config["tempscale"], TEMPSCALE_HEADLINE_TAU)]


def tempscale_eval_config(wildcards) -> str:
    """What one evaluation reads: the tasks, its own model and variant (never the whole grid),
    so adding a tau plans only the new tau's jobs."""
    section = config["tempscale"]
    variant = tempscale_variant_map()[wildcards.variant]
    model = tempscale_model_slugs(section)[wildcards.model]
    if not variant.applies_to(model):
        raise WorkflowError(f"TempScale variant {variant.slug} is not evaluated for model {model} "
                            f"(config key 'tempscale.ablation.position_bias.models': {list(variant.models)})")
    ablation = {"models": [model]}
    if variant.mode == "law":  # the law's shared settings, not the list of laws
        ablation["tau_laws"] = {k: v for k, v in section["ablation"]["tau_laws"].items() if k not in ("laws", "layers")}
    if variant.fix:  # the fit settings, not the list of methods
        ablation["fixes"] = {k: v for k, v in section["ablation"]["fixes"].items() if k not in ("methods", "with_tempscale")}
    job = {
        "scale": config["scale"], "seed": config["seed"], "ablation": ablation,
        "tasks": {k: v for k, v in section["tasks"].items() if k != "threads"},  # threads: a resource
        "variant": variant.spec(),
    }
    revisions = section.get("model_revisions") or {}
    if model in revisions:  # a hub model: its own pin only (another model's pin reruns nothing here)
        job["model_revisions"] = {model: revisions[model]}
    return json.dumps(job, sort_keys=True)


def measured_alpha_input(variants) -> dict[str, str]:
    """The theory stage's measured alpha when a variant uses the law 'power-measured'; else nothing."""
    return {"tau_law": rules.theory_real_attention.output.tau_law} if any(v.needs_measured_alpha for v in variants) else {}


def tempscale_eval_extra_inputs(wildcards) -> dict[str, str]:
    return measured_alpha_input([tempscale_variant_map()[wildcards.variant]])


def tempscale_fix_collapse_config(wildcards) -> str:
    """The collapse texts' settings, the models, the laws' and fixes' settings and the variants shown."""
    section = config["tempscale"]
    variants = tempscale_side_by_side(section, TEMPSCALE_HEADLINE_TAU)
    ablation = {k: section["ablation"][k] for k in ("models", "tau_laws", "fixes")}
    job = {"scale": config["scale"], "seed": config["seed"], "collapse": section["collapse"], "ablation": ablation,
           "model_revisions": section.get("model_revisions", {}), "variants": [v.spec() for v in variants]}
    return json.dumps(job, sort_keys=True)


def tempscale_fix_collapse_inputs(wildcards) -> dict[str, str]:
    return measured_alpha_input(tempscale_side_by_side(config["tempscale"], TEMPSCALE_HEADLINE_TAU))


def tempscale_fixes_shown() -> bool:
    """The side-by-side comparison exists when the grid has a law or a fix."""
    return enabled("tempscale") and len(tempscale_side_by_side(config["tempscale"], TEMPSCALE_HEADLINE_TAU)) > 2


def tempscale_law_problems() -> list[str]:
    """'power-measured' reads each model's alpha from the theory stage: it must be on and measure
    every ablation model."""
    if not enabled("tempscale") or not any(v.needs_measured_alpha for v in tempscale_variant_map().values()):
        return []
    if not enabled("theory"):
        return ["config key 'tempscale.ablation.tau_laws.laws' has 'power-measured', whose alpha the theory stage "
                "measures (results/theory/tau_law.csv), but theory.enabled is false: enable it or drop the law"]
    measured = theory_alpha_models()
    missing = [str(m) for m in config["tempscale"]["ablation"]["models"] if str(m) not in measured]
    if missing:
        return [f"config key 'tempscale.ablation.tau_laws.laws' has 'power-measured' but the theory stage measures no "
                f"alpha for {missing}: add them to 'theory.real_attention.alpha_models' or drop the law"]
    return []


TEMPSCALE_LAW_PROBLEMS = tempscale_law_problems()
if TEMPSCALE_LAW_PROBLEMS:
    raise WorkflowError("config problems, found before any job started:\n  - " + "\n  - ".join(TEMPSCALE_LAW_PROBLEMS))


def tempscale_eval_io(wildcards, input, output) -> str:
    """job_io plus the job's model slug and mteb cache folder as --param values."""
    extra = {"model": wildcards.model, "mteb_cache": TEMPSCALE_MTEB_CACHE}
    params = " ".join(f"--param {k}={shlex.quote(json.dumps(v))}" for k, v in extra.items())
    return f"{job_io(wildcards, input, output)} {params}"


def tempscale_eval_inputs(wildcards) -> dict[str, str]:
    """scores_i / per_item_i for every (model, variant) of the grid, row_taus_i for the temperature
    laws' (named for job_io)."""
    variants = tempscale_variant_map()
    files = {}
    for i, (model, variant) in enumerate(tempscale_grid()):
        folder = TEMPSCALE_EVAL.format(model=model, variant=variant)
        files[f"scores_{i}"] = f"{folder}/scores.csv"
        files[f"per_item_{i}"] = f"{folder}/per_item.csv"
        if variants[variant].mode == "law":
            files[f"row_taus_{i}"] = f"{folder}/row_taus.csv"
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
PUBLISHED_SCHEMA = "workflow/schemas/published_numbers.schema.yaml"
PUBLISHED_PROBLEMS = schema_problems(
    yaml.safe_load(open(os.path.join(workflow.basedir, PUBLISHED_NUMBERS), encoding="utf-8")),
    os.path.join(workflow.basedir, PUBLISHED_SCHEMA),
)
if PUBLISHED_PROBLEMS:
    raise WorkflowError(f"{PUBLISHED_NUMBERS} problems, found before any job started:\n  - "
                        + "\n  - ".join(PUBLISHED_PROBLEMS))


def claims_inputs(wildcards) -> dict[str, str]:
    """The ledger plus every result file a claim reads, from the stages that are on (a stage
    that is off leaves its claims "not tested")."""
    inputs = {"claims": CLAIMS}
    if enabled("theory"):
        inputs.update(theory_checks=rules.theory_checks.output.checks, real_gain=rules.theory_real_attention.output.gains)
    if enabled("tempscale"):
        inputs.update(collapse=rules.tempscale_collapse.output.similarity, collapse_controls=rules.tempscale_collapse.output.controls,
                      ablation=rules.tempscale_ablation.output.ablation)
        inputs.update({k: v for k, v in tempscale_eval_inputs(wildcards).items() if k.startswith("per_item_")})
    if enabled("dcls"):
        inputs["dcls_metrics"] = rules.dcls_ablation.output.metrics
    return inputs


def fixes_figure_config(wildcards) -> str:
    """figures.dpi plus the claims ledger's headline tau (the fixes' TempScale combination)."""
    return json.dumps({"scale": config["scale"], "dpi": config["figures"]["dpi"], "headline_tau": TEMPSCALE_HEADLINE_TAU},
                      sort_keys=True)


def paper_compare_inputs(wildcards) -> dict[str, str]:
    """Published numbers, plus each stage's ablation.csv when the stage is on and a rule makes it
    (a stage that is off gives "not run" cells instead of a missing-input error)."""
    inputs = {"published": PUBLISHED_NUMBERS, "published_schema": PUBLISHED_SCHEMA}
    for stage in ("dcls", "tempscale"):
        path = f"{RESULTS}/{stage}/ablation.csv"
        if enabled(stage) and any(r.is_producer(path) for r in workflow.rules):
            inputs[stage] = path
    return inputs


# what the paper-vs-reproduced table states about this run's setup (figures/paper_compare.py)
PAPER_COMPARE_KEYS = {
    "dcls": ("families", "data.dataset", "data.image_size", "data.train_size", "train.epochs"),
    "tempscale": ("ablation.models",),
}


def paper_compare_config(wildcards) -> str:
    """scale plus, per stage, the setup keys the table describes."""
    runs: dict = {}
    for stage, keys in PAPER_COMPARE_KEYS.items():
        runs[stage] = {}
        for key in keys:
            copy_config_key(config[stage], runs[stage], key.split("."))
    return json.dumps({"scale": config["scale"], "runs": runs}, sort_keys=True)


# --- staging the hub cache (workflow/rules/stage.smk) --------------------------------------
# Every job reads hub models and datasets from this one cache (inherited through the environment).
if config["resources"].get("hf_cache"):
    os.environ.update(HF_HOME=os.path.abspath(config["resources"]["hf_cache"]))

STAGE_MANIFEST = "results/stage/hf_manifest.json"


@functools.lru_cache(maxsize=1)
def stage_entries() -> tuple:
    """(kind, repo_id, revision) of every pinned hub model and dataset (mteb is imported here only)."""
    from tsdcls.tempscale.stage import hub_entries

    if not enabled("tempscale"):
        return ()
    return tuple((e.kind, e.repo_id, e.revision) for e in hub_entries(config["tempscale"]))


def stage_io(wildcards, input, output) -> str:
    """job_io plus the entries and the cache root as --param values (all the job reads)."""
    extra = {"entries": [list(e) for e in stage_entries()], "hf_cache": config["resources"].get("hf_cache", "")}
    params = " ".join(f"--param {k}={shlex.quote(json.dumps(v))}" for k, v in extra.items())
    return f"{job_io(wildcards, input, output)} {params}"


def stage_listing(wildcards) -> str:
    """One line per entry for the rule's message (what `snakemake -n stage` shows)."""
    root = config["resources"].get("hf_cache") or "HF_HOME"
    lines = [f"  {kind} {repo}@{revision}" for kind, repo, revision in stage_entries()]
    return f"{root}: {len(lines)} hub entries\n" + "\n".join(lines)
