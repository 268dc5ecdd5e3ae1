# The SpIEL reproduction study. Main job: `snakemake --cores all results/table1.csv`.
# Scale is chosen by config only: config/config.yaml (embedded default, offline),
# config/smoke.yaml (CI, minutes), config/paper.yaml (Llama-2 7b/13b on GPUs, hub data).
from snakemake.utils import min_version, validate

min_version("9.0")

configfile: "config/config.yaml"

validate(config, "workflow/schemas/config.schema.yaml")

report: "workflow/report/workflow.rst"

include: "workflow/rules/common.smk"


# Cheap rules that read the network or only files run where Snakemake runs, never as cluster
# jobs: preparation (hub data, downloads), method resolution, tables, figures.
localrules:
    all, downloads, download_model, build_mixture, split_heldout, prepare_benchmark, prepare_benchmark_split,
    prepare_benchmark_bpb,
    resolve_method,
    method_table, paper_comparison, grid, figure4, figure3, table3,


include: "workflow/rules/prepare.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/profile.smk"


# No target: the whole study. `snakemake --report results/report.html` reports this rule's
# tables and figures, so run it after they exist.
rule all:
    input:
        expand(f"{RESULTS}/{{name}}", name=["table1.csv", "table2.csv", "table3.csv", "table4.csv",
                                           "figure3.png", "figure4.png", "table1_vs_paper.md",
                                           "table2_vs_paper.md", "table3_vs_paper.md"]),
