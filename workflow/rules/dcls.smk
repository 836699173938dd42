# DCLS stage: training, evaluation and the ablation grid (family x variant x kernel_count x dks x
# seed). Training runs on GPU with torchrun (one process per requested GPU) when device is cuda.
wildcard_constraints:
    family="[A-Za-z0-9_]+",
    variant="|".join(DCLS_VARIANTS),
    kernel_count="[0-9]+",
    dks="[0-9]+",
    seed="[0-9]+",


rule dcls_train:
    """Train one grid cell; resumes from its checkpoint directory (a param, never an output)."""
    output:
        weights=f"{DCLS_RUN}/weights.pt",
        train=f"{DCLS_RUN}/train.json",
    params:
        config=job_config("dcls", "train", *DCLS_TRAIN_DATA_KEYS, "families.{family}", seed="wildcard"),
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
        metrics=f"{DCLS_RUN}/metrics.json",
        kernels=f"{DCLS_RUN}/kernels.json",
    params:
        config=job_config("dcls", *DCLS_EVAL_KEYS, "data", *DCLS_EVAL_TRAIN_KEYS, "families.{family}", seed="wildcard"),
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
        tsdcls("dcls-evaluate")


if DCLS_OFFICIAL_CHECKPOINT:

    rule dcls_evaluate_official:
        """The published ConvNeXt-dcls checkpoint through the same evaluation (folded or not)."""
        input:
            checkpoint=DCLS_OFFICIAL_CHECKPOINT,
        output:
            metrics="results/dcls/official/metrics.json",
            kernels="results/dcls/official/kernels.json",
        params:
            config=job_config("dcls", "evaluate", "data", *DCLS_EVAL_TRAIN_KEYS, seed="none"),
            io=job_io,
        log:
            log_path("dcls_evaluate_official"),
        benchmark:
            bench_path("dcls_evaluate_official")
        threads: DCLS["threads"]
        resources:
            **rule_resources("dcls_evaluate", DCLS_TRAIN_KIND),
        conda:
            "../../envs/dcls.yaml"
        shell:
            tsdcls("dcls-evaluate")


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
        config=job_config("dcls", seed="none"),
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
        tsdcls("dcls-ablation")


TARGETS["dcls"] = [*rules.dcls_ablation.output, *dcls_runs("weights.pt")]
if DCLS_OFFICIAL_CHECKPOINT:
    TARGETS["dcls"] += [*rules.dcls_evaluate_official.output]
