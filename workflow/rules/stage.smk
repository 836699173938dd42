# Stage once, compute offline: `snakemake stage` (on a login node with internet) fetches every
# hub model and dataset the config names, at pinned revisions, into resources.hf_cache and writes
# a manifest; compute jobs then read that cache with HF_HUB_OFFLINE=1.
#   snakemake stage --configfile workflow/presets/paper.yaml       # fetch (allow_network: true)
#   snakemake -n stage --configfile workflow/presets/paper.yaml    # list what would be fetched

localrules:
    stage,


rule stage:
    """Fetch (online) or check (offline) every pinned hub entry; write the manifest."""
    output:
        manifest=STAGE_MANIFEST,
    params:
        config=job_config("tempscale", seed="none"),  # the scale, for the manifest's provenance
        io=stage_io,
        listing=stage_listing,
    message:
        "stage into {params.listing}"
    log:
        log_path("stage"),
    benchmark:
        bench_path("stage")
    threads: 1
    resources:
        **rule_resources("stage"),
    conda:
        "../../envs/tempscale.yaml"
    shell:
        # --allow-network: this job may download; HF_HUB_OFFLINE=1 (set by allow_network: false or
        # by the caller) makes it a check of the cache instead
        "python -m tsdcls.cli hub-stage --config {params.config:q} --threads {threads} --allow-network {params.io} > {log} 2>&1"
