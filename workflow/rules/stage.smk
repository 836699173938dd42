# Stage once, compute offline: `snakemake stage` (on a login node with internet) fetches every
# hub model and dataset the config names, at pinned revisions, into resources.hf_cache and writes
# a manifest; compute jobs then read that cache with HF_HUB_OFFLINE=1.
#   snakemake stage --configfile workflow/presets/paper.yaml       # fetch (allow_network: true)
#   snakemake -n stage --configfile workflow/presets/paper.yaml    # list what would be fetched

# ===== helpers for common.smk (lead: move this block there; the rule below stays) ==============
import functools
import json
import os
import shlex

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


# ===== end of helpers ==========================================================================


localrules:
    stage,


rule stage:
    """Fetch (online) or check (offline) every pinned hub entry; write the manifest."""
    output:
        manifest=STAGE_MANIFEST,
    params:
        io=stage_io,
        listing=stage_listing,
    message:
        "stage into {params.listing}"
    log:
        log_path("stage"),
    benchmark:
        bench_path("stage")
    threads: 1
    conda:
        "../../envs/tempscale.yaml"
    shell:
        # --allow-network: this job may download; HF_HUB_OFFLINE=1 (set by allow_network: false or
        # by the caller) makes it a check of the cache instead
        "python -m tsdcls.cli hub-stage --threads {threads} --allow-network {params.io} > {log} 2>&1"
