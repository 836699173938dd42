# DCLS stage: training, evaluation and the ablation grid (family x variant x kernel_count x dks x
# seed). Training runs on GPU with torchrun (one process per requested GPU) when device is cuda.
import shlex

DCLS = config["dcls"]
DCLS_RUN = "results/dcls/runs/{family}/{variant}/k{kernel_count}_d{dks}/seed{seed}"
DCLS_STEM = "{family}_{variant}_k{kernel_count}_d{dks}_seed{seed}"
DCLS_TRAIN_KIND = "gpu" if config["device"].startswith("cuda") else "cpu"

wildcard_constraints:
    family="[A-Za-z0-9_]+",
    variant="dense|dilated|dcls_v0|dcls_gauss|dcls_frozen",
    kernel_count="[0-9]+",
    dks="[0-9]+",
    seed="[0-9]+",


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
    pattern = DCLS_RUN + "/" + name
    return [pattern.format(seed=seed, **cell) for cell in dcls_cells() for seed in DCLS["seeds"]]


def dcls_io(wildcards, input, output) -> str:
    """Named files plus the grid wildcards and the checkpoint directory as --param values."""
    params = {
        "family": wildcards.family, "variant": wildcards.variant,
        "kernel_count": int(wildcards.kernel_count), "dks": int(wildcards.dks),
        "checkpoint_dir": dcls_checkpoint_dir(wildcards),
    }
    extra = " ".join(f"--param {k}={shlex.quote(json.dumps(v))}" for k, v in params.items())
    return job_io(wildcards, input, output) + " " + extra


def dcls_checkpoint_dir(wildcards) -> str:
    """One resumable checkpoint folder per run (a param: it survives a failed or killed job)."""
    return DCLS["checkpoint_dir"] + "/" + DCLS_STEM.format(**wildcards)


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


rule dcls_train:
    """Train one grid cell; resumes from its checkpoint directory (a param, never an output)."""
    output:
        weights=DCLS_RUN + "/weights.pt",
        train=DCLS_RUN + "/train.json",
    params:
        io=dcls_io,
        checkpoint_dir=dcls_checkpoint_dir,
    log:
        log_path("dcls_train", DCLS_STEM),
    benchmark:
        bench_path("dcls_train", DCLS_STEM)
    threads: DCLS["threads"]
    resources:
        **rule_resources("dcls_train", DCLS_TRAIN_KIND),
    conda:
        "../../envs/dcls.yaml"
    shell:
        dcls_launch("dcls-train")


rule dcls_evaluate:
    """Top-1/top-5, per-class accuracy, robustness sets, throughput; learned positions as JSON."""
    input:
        weights=rules.dcls_train.output.weights,
        train=rules.dcls_train.output.train,
    output:
        metrics=DCLS_RUN + "/metrics.json",
        kernels=DCLS_RUN + "/kernels.json",
    params:
        io=dcls_io,
    log:
        log_path("dcls_evaluate", DCLS_STEM),
    benchmark:
        bench_path("dcls_evaluate", DCLS_STEM)
    threads: DCLS["threads"]
    resources:
        **rule_resources("dcls_evaluate", DCLS_TRAIN_KIND),
    conda:
        "../../envs/dcls.yaml"
    shell:
        tsdcls("dcls-evaluate", "dcls", seed="{wildcards.seed}")


rule dcls_ablation:
    """One row per run (metrics.csv), mean ± std over seeds per cell (ablation.csv), tables."""
    input:
        metrics=dcls_runs("metrics.json"),
    output:
        metrics="results/dcls/metrics.csv",
        ablation="results/dcls/ablation.csv",
        per_class="results/dcls/per_class.csv",
        robustness="results/dcls/robustness.csv",
        table_md="results/tables/dcls_ablation.md",
        table_tex="results/tables/dcls_ablation.tex",
    params:
        io=job_io,
    log:
        log_path("dcls_ablation"),
    benchmark:
        bench_path("dcls_ablation")
    threads: 1
    resources:
        **rule_resources("dcls_ablation"),
    conda:
        "../../envs/dcls.yaml"
    shell:
        tsdcls("dcls-ablation", "dcls")


TARGETS["dcls"] = [*rules.dcls_ablation.output, *dcls_runs("weights.pt")]
