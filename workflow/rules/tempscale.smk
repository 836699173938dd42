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
        checks="results/tempscale/collapse_checks.json",
    params:
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
        tsdcls("tempscale-collapse", "tempscale")


TARGETS["tempscale"] += [rules.tempscale_collapse.output.checks]

