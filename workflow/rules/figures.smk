# Figures and tables: read results/, never recompute models. `snakemake figures` rebuilds them.
# One block per stage; each block appends its files to FIGURE_TARGETS.

# --- theory figures ---------------------------------------------------------------------------


rule figure_theory_attenuation:
    """sigma_a vs sequence length with the closed-form bound and the fitted slope."""
    input:
        gains=rules.theory_synthetic.output.gains,
        bounds=rules.theory_synthetic.output.bounds,
        slopes=rules.theory_synthetic.output.slopes,
        real=rules.theory_real_attention.output.gains,
    output:
        png=report(
            "results/figures/theory_attenuation.png",
            caption="../report/theory_attenuation.rst",
            category="Theory",
        ),
        pdf="results/figures/theory_attenuation.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
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
        tsdcls("figure-theory-attenuation")


if enabled("theory"):
    FIGURE_TARGETS += rules.figure_theory_attenuation.output

# --- tempscale figures ------------------------------------------------------------------------

# collapse: cosine similarity and sigma_a vs length, tau = 1 vs TempScale (collapse CSVs only)


rule figure_tempscale_collapse:
    """Embedding collapse vs text length, TempScale's effect, and sigma_a per layer."""
    input:
        similarity=rules.tempscale_collapse.output.similarity,
        attention=rules.tempscale_collapse.output.attention,
    output:
        png=report(
            "results/figures/tempscale_collapse.png",
            caption="../report/tempscale_collapse.rst",
            category="TempScale",
        ),
        pdf="results/figures/tempscale_collapse.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
        io=job_io,
    log:
        log_path("figure_tempscale_collapse"),
    benchmark:
        bench_path("figure_tempscale_collapse")
    threads: 1
    resources:
        **rule_resources("figure_tempscale_collapse"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-tempscale-collapse")


if enabled("tempscale"):
    FIGURE_TARGETS += rules.figure_tempscale_collapse.output

# tasks (mteb tasks and ablations): figures and the ablation table from results/tempscale/ablation.csv


rule figure_tempscale_passkey_needle:
    """Passkey and needle accuracy vs document length: tau = 1 vs TempScale variants."""
    input:
        ablation=rules.tempscale_ablation.output.ablation,
    output:
        png=report(
            "results/figures/tempscale_passkey_needle.png",
            caption="../report/tempscale_passkey_needle.rst",
            category="TempScale",
        ),
        pdf="results/figures/tempscale_passkey_needle.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
        io=job_io,
    log:
        log_path("figure_tempscale_passkey_needle"),
    benchmark:
        bench_path("figure_tempscale_passkey_needle")
    threads: 1
    resources:
        **rule_resources("figure_tempscale_passkey_needle"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-tempscale-passkey-needle")


rule figure_tempscale_tau_sweep:
    """Change of each task's main score vs tau (all layers), per length."""
    input:
        ablation=rules.tempscale_ablation.output.ablation,
    output:
        png=report(
            "results/figures/tempscale_tau_sweep.png",
            caption="../report/tempscale_tau_sweep.rst",
            category="TempScale",
        ),
        pdf="results/figures/tempscale_tau_sweep.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
        io=job_io,
    log:
        log_path("figure_tempscale_tau_sweep"),
    benchmark:
        bench_path("figure_tempscale_tau_sweep")
    threads: 1
    resources:
        **rule_resources("figure_tempscale_tau_sweep"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-tempscale-tau-sweep")


rule table_tempscale_ablation:
    """Markdown/LaTeX ablation table: score and change vs tau = 1 per variant, * = significant."""
    input:
        ablation=rules.tempscale_ablation.output.ablation,
    output:
        md="results/tables/tempscale_ablation.md",
        tex="results/tables/tempscale_ablation.tex",
    params:
        config=job_config("figures", seed="none"),
        io=job_io,
    log:
        log_path("table_tempscale_ablation"),
    benchmark:
        bench_path("table_tempscale_ablation")
    threads: 1
    resources:
        **rule_resources("table_tempscale_ablation"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("table-tempscale-ablation")


if enabled("tempscale"):
    FIGURE_TARGETS += [
        *rules.figure_tempscale_tau_sweep.output,
        *rules.table_tempscale_ablation.output,
    ]


rule figure_tempscale_fixes:
    """TempScale vs temperature laws vs post-hoc fixes: collapse per length and every task's change."""
    input:
        ablation=rules.tempscale_ablation.output.ablation,
        collapse=rules.tempscale_fix_collapse.output.collapse,
    output:
        png=report("results/figures/tempscale_fixes.png", caption="../report/tempscale_fixes.rst", category="TempScale"),
        pdf="results/figures/tempscale_fixes.pdf",
        summary_csv="results/tables/tempscale_fixes.csv",
        summary_md="results/tables/tempscale_fixes.md",
        summary_tex="results/tables/tempscale_fixes.tex",
        tasks_md="results/tables/tempscale_fixes_tasks.md",
        tasks_tex="results/tables/tempscale_fixes_tasks.tex",
    params:
        config=fixes_figure_config,
        io=job_io,
    log:
        log_path("figure_tempscale_fixes"),
    benchmark:
        bench_path("figure_tempscale_fixes")
    threads: 1
    resources:
        **rule_resources("figure_tempscale_fixes"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-tempscale-fixes")


if tempscale_fixes_shown():
    FIGURE_TARGETS += rules.figure_tempscale_fixes.output
    _ts_tasks = config["tempscale"]["tasks"]
    if _ts_tasks["passkey"]["enabled"] or _ts_tasks["needle"]["enabled"]:
        FIGURE_TARGETS += rules.figure_tempscale_passkey_needle.output

# --- dcls figures -----------------------------------------------------------------------------


rule figure_dcls_accuracy:
    """Top-1 per conv variant (mean ± std over seeds) and top-1 under corruption by severity."""
    input:
        ablation=rules.dcls_ablation.output.ablation,
        robustness=rules.dcls_ablation.output.robustness,
    output:
        png=report("results/figures/dcls_accuracy.png", caption="../report/dcls_accuracy.rst", category="DCLS"),
        pdf="results/figures/dcls_accuracy.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
        io=job_io,
    log:
        log_path("figure_dcls_accuracy"),
    benchmark:
        bench_path("figure_dcls_accuracy")
    threads: 1
    resources:
        **rule_resources("figure_dcls_accuracy"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-dcls-accuracy")


rule figure_dcls_kernels:
    """Learned DCLS kernels (tap positions and interpolated weights), first layer of each stage."""
    input:
        kernels=dcls_kernel_inputs,
    output:
        png=report("results/figures/dcls_kernels.png", caption="../report/dcls_kernels.rst", category="DCLS"),
        pdf="results/figures/dcls_kernels.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
        io=job_io,
    log:
        log_path("figure_dcls_kernels"),
    benchmark:
        bench_path("figure_dcls_kernels")
    threads: 1
    resources:
        **rule_resources("figure_dcls_kernels"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-dcls-kernels")


rule figure_dcls_throughput:
    """Top-1 vs inference throughput, and training step time per grid cell."""
    input:
        ablation=rules.dcls_ablation.output.ablation,
    output:
        png=report("results/figures/dcls_throughput.png", caption="../report/dcls_throughput.rst", category="DCLS"),
        pdf="results/figures/dcls_throughput.pdf",
    params:
        config=job_config("figures", "dpi", seed="none"),
        io=job_io,
    log:
        log_path("figure_dcls_throughput"),
    benchmark:
        bench_path("figure_dcls_throughput")
    threads: 1
    resources:
        **rule_resources("figure_dcls_throughput"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("figure-dcls-throughput")


if enabled("dcls"):
    FIGURE_TARGETS += [
        *rules.figure_dcls_accuracy.output,
        *rules.figure_dcls_kernels.output,
        *rules.figure_dcls_throughput.output,
        rules.dcls_ablation.output.table_md,
        rules.dcls_ablation.output.table_tex,
    ]


# --- tables and report ------------------------------------------------------------------------
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
        config=paper_compare_config,
        io=job_io,
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
        tsdcls("table-paper-vs-reproduced")


if enabled("figures"):
    FIGURE_TARGETS += rules.table_paper_vs_reproduced.output


rule claims:
    """Every claim of data/claims.yaml: estimate, 95% CI and the verdict of its pre-registered rule."""
    input:
        unpack(claims_inputs),
    output:
        csv="results/claims.csv",
        md="results/claims.md",
        png=report("results/figures/claims_forest.png", caption="../report/claims.rst", category="Claims"),
        pdf="results/figures/claims_forest.pdf",
    params:
        config=job_config("figures", "dpi"),
        io=job_io,
    log:
        log_path("claims"),
    benchmark:
        bench_path("claims")
    threads: 1
    resources:
        **rule_resources("claims"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("claims")


if enabled("figures"):
    FIGURE_TARGETS += rules.claims.output


rule figures:
    """Regenerate every figure and table from results/ (no model job runs)."""
    input:
        FIGURE_TARGETS,
