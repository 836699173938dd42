# TempScale stage: temperature-scaled attention, length collapse, mteb tasks and ablations.

TARGETS["tempscale"] = []

# --- collapse analysis ------------------------------------------------------------------------
# Paper Figure 1: embeddings of longer texts grow alike; TempScale's tau counteracts it.


rule tempscale_collapse:
    """Cosine similarity, effective rank and sigma_a per layer of real texts binned by length."""
    output:
        similarity="results/tempscale/collapse_similarity.csv",
        attention="results/tempscale/collapse_attention.csv",
        texts="results/tempscale/collapse_texts.csv",
        controls="results/tempscale/collapse_controls.csv",
        checks="results/tempscale/collapse_checks.json",
    params:
        config=job_config("tempscale", "collapse", "models", "taus", "model_revisions"),
        io=job_io,
    log:
        log_path("tempscale_collapse"),
    benchmark:
        bench_path("tempscale_collapse")
    threads: 2
    resources:
        **rule_resources("tempscale_collapse"),
    conda:
        "../../envs/tempscale.yaml"
    shell:
        tsdcls("tempscale-collapse")


TARGETS["tempscale"] += [rules.tempscale_collapse.output.checks]


# --- mteb tasks and ablations -----------------------------------------------------------------
# One evaluation job per model x TempScale variant (every mteb task inside it), then one
# aggregation with paired significance tests. The grid comes from tempscale.ablation.
rule tempscale_evaluate:
    """One model x TempScale variant through mteb.evaluate on every local (and hub) task."""
    input:
        unpack(tempscale_eval_extra_inputs),
    output:
        scores="results/tempscale/eval/{model}/{variant}/scores.csv",
        per_item="results/tempscale/eval/{model}/{variant}/per_item.csv",
        row_taus="results/tempscale/eval/{model}/{variant}/row_taus.csv",
    params:
        config=tempscale_eval_config,
        io=tempscale_eval_io,
    wildcard_constraints:
        model="[A-Za-z0-9_.-]+",
        variant=TEMPSCALE_SLUG_PATTERN,
    log:
        log_path("tempscale_evaluate", "{model}/{variant}"),
    benchmark:
        bench_path("tempscale_evaluate", "{model}/{variant}")
    threads: config["tempscale"].get("tasks", {}).get("threads", 1)
    resources:
        **rule_resources("tempscale_evaluate", "gpu" if config["device"].startswith("cuda") else "cpu"),
    conda:
        "../../envs/tempscale.yaml"
    shell:
        tsdcls("tempscale-evaluate")


rule tempscale_ablation:
    """Every variant vs tau = 1 of the same model: delta, paired p-value, significance; the
    temperature laws' token counts and taus of queries and documents."""
    input:
        unpack(tempscale_eval_inputs),
    output:
        ablation="results/tempscale/ablation.csv",
        law_taus="results/tempscale/law_taus.csv",
    params:
        config=job_config("tempscale", "significance"),
        io=job_io,
    log:
        log_path("tempscale_ablation"),
    benchmark:
        bench_path("tempscale_ablation")
    threads: 1
    resources:
        **rule_resources("tempscale_ablation"),
    conda:
        "../../envs/tempscale.yaml"
    shell:
        tsdcls("tempscale-ablation")


TARGETS["tempscale"] += [rules.tempscale_ablation.output.ablation]


# --- length-collapse fixes side by side ---------------------------------------------------------
# TempScale vs the post-hoc fixes and temperature laws: each one's collapse per length bin, on
# the collapse analysis' texts (its effect on tasks is in ablation.csv).
rule tempscale_fix_collapse:
    """Mean pairwise cosine per length bin for tau = 1, the headline tau, every law and fix."""
    input:
        unpack(tempscale_fix_collapse_inputs),
    output:
        collapse="results/tempscale/fixes_collapse.csv",
    params:
        config=tempscale_fix_collapse_config,
        io=job_io,
    log:
        log_path("tempscale_fix_collapse"),
    benchmark:
        bench_path("tempscale_fix_collapse")
    threads: 2
    resources:
        **rule_resources("tempscale_fix_collapse", "gpu" if config["device"].startswith("cuda") else "cpu"),
    conda:
        "../../envs/tempscale.yaml"
    shell:
        tsdcls("tempscale-fix-collapse")


if tempscale_fixes_shown():
    TARGETS["tempscale"] += [rules.tempscale_fix_collapse.output.collapse]


# --- MPNet's relative position bias: scaled with tau (the default) or not ---------------------
rule tempscale_position_bias:
    """Embedding change from leaving the position bias unscaled vs from tau, on a few windows."""
    output:
        effect="results/tempscale/position_bias_effect.csv",
    params:
        config=job_config("tempscale", "position_bias_effect", "model_revisions"),
        io=job_io,
    log:
        log_path("tempscale_position_bias"),
    benchmark:
        bench_path("tempscale_position_bias")
    threads: 1
    resources:
        **rule_resources("tempscale_position_bias"),
    conda:
        "../../envs/tempscale.yaml"
    shell:
        tsdcls("tempscale-position-bias")


if enabled("tempscale") and (config["tempscale"].get("position_bias_effect") or {}).get("enabled"):
    TARGETS["tempscale"] += [rules.tempscale_position_bias.output.effect]
