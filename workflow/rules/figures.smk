# Figures and tables: read results/, never recompute models. `snakemake figures` rebuilds them.
# One block per stage; each block appends its files to FIGURE_TARGETS.

# --- theory figures ---------------------------------------------------------------------------


rule figure_theory_attenuation:
    """sigma_a vs sequence length with the closed-form bound and the fitted slope."""
    input:
        gains="results/theory/synthetic_gain.csv",
        real="results/theory/real_attention_gain.csv",
    output:
        png=report(
            "results/figures/theory_attenuation.png",
            caption="../report/theory_attenuation.rst",
            category="Theory",
        ),
        pdf="results/figures/theory_attenuation.pdf",
    params:
        io=job_io,
    log:
        log_path("figure_theory_attenuation"),
    benchmark:
        bench_path("figure_theory_attenuation")
    threads: 1
    resources:
        **rule_resources("figure_theory_attenuation"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-theory-attenuation", "figures")


if enabled("theory"):
    FIGURE_TARGETS += rules.figure_theory_attenuation.output

# --- tempscale figures ------------------------------------------------------------------------

# --- dcls figures -----------------------------------------------------------------------------

# --- tables and report ------------------------------------------------------------------------


rule figures:
    """Regenerate every figure and table from results/ (no model job runs)."""
    input:
        FIGURE_TARGETS,
