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
PUBLISHED_NUMBERS = "data/published_numbers.yaml"


def paper_compare_inputs(wildcards) -> dict[str, str]:
    """Published numbers, plus each stage's ablation.csv when the stage is on and a rule makes it
    (a stage that is off gives "not run" cells instead of a missing-input error)."""
    inputs = {"published": PUBLISHED_NUMBERS}
    for stage in ("dcls", "tempscale"):
        path = f"{RESULTS}/{stage}/ablation.csv"
        if enabled(stage) and any(rule.is_producer(path) for rule in workflow.rules):
            inputs[stage] = path
    return inputs


def paper_compare_io(wildcards, input, output) -> str:
    """job_io plus the DCLS/TempScale config sections, so the table states what this run ran."""
    runs = {stage: config[stage] for stage in ("dcls", "tempscale")}
    return job_io(wildcards, input, output) + " --param runs=" + shlex.quote(json.dumps(runs, sort_keys=True))


rule table_paper_vs_reproduced:
    """The papers' published numbers beside this run's, with each run's scale and setup."""
    input:
        unpack(paper_compare_inputs),
    output:
        markdown="results/tables/paper_vs_reproduced.md",
        latex="results/tables/paper_vs_reproduced.tex",
        html=report(
            "results/tables/paper_vs_reproduced.html",
            caption="../report/paper_vs_reproduced.rst",
            category="Tables",
        ),
    params:
        io=paper_compare_io,
    log:
        log_path("table_paper_vs_reproduced"),
    benchmark:
        bench_path("table_paper_vs_reproduced")
    threads: 1
    resources:
        **rule_resources("table_paper_vs_reproduced"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("table-paper-vs-reproduced", "figures")


if enabled("figures"):
    FIGURE_TARGETS += rules.table_paper_vs_reproduced.output


rule figures:
    """Regenerate every figure and table from results/ (no model job runs)."""
    input:
        FIGURE_TARGETS,
