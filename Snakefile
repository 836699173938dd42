# Reproduction pipeline for TempScale (arXiv 2410.24200) and DCLS (ICLR 2023).
# This file is the table of contents: config + schema, one rule file per stage, `rule all`.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/theory.smk"
include: "workflow/rules/tempscale.smk"
include: "workflow/rules/dcls.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/stage.smk"


rule all:
    default_target: True
    input:
        all_targets(),
