# Theory stage: checks of the low-pass attenuation bound (TempScale paper, docs/theory.md).


rule theory_synthetic:
    """Bound (a), closed-form bound (b) and the sigma_a(n, tau) scaling law (c) on synthetic logits."""
    output:
        gains="results/theory/synthetic_gain.csv",
        bounds="results/theory/bound_check.csv",
        slopes="results/theory/synthetic_slopes.csv",
        tau_restore="results/theory/tau_restore.csv",
        checks="results/theory/synthetic_checks.json",
    params:
        config=job_config("theory", "synthetic"),
        io=job_io,
    log:
        log_path("theory_synthetic"),
    benchmark:
        bench_path("theory_synthetic")
    threads: 1  # small matrices and Lanczos mat-vecs: a second BLAS thread only spins
    resources:
        **rule_resources("theory_synthetic"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("theory-synthetic")


rule theory_real_attention:
    """Check (d): sigma_a per layer of the offline MiniLM on real Wikipedia text of growing length."""
    output:
        gains="results/theory/real_attention_gain.csv",
        slopes="results/theory/real_attention_slopes.csv",
        summary="results/theory/real_attention_summary.csv",
        tau_law="results/theory/tau_law.csv",
        checks="results/theory/real_attention_checks.json",
    params:
        config=theory_real_config,
        io=job_io,
    log:
        log_path("theory_real_attention"),
    benchmark:
        bench_path("theory_real_attention")
    threads: 1  # the two theory jobs run side by side on 2 cores instead
    resources:
        **rule_resources("theory_real_attention"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("theory-real-attention")


rule theory_checks:
    """Merge every check; the job fails (and writes nothing) if any check is violated."""
    input:
        synthetic=rules.theory_synthetic.output.checks,
        real=rules.theory_real_attention.output.checks,
    output:
        checks="results/theory/checks.json",
    params:
        config=job_config("theory", seed="none"),
        io=job_io,
    log:
        log_path("theory_checks"),
    benchmark:
        bench_path("theory_checks")
    threads: 1
    resources:
        **rule_resources("theory_checks"),
    conda:
        "../../envs/core.yaml"
    shell:
        tsdcls("theory-summary")


TARGETS["theory"] = [rules.theory_checks.output.checks]
