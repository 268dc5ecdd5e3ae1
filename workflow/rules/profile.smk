# Table 3: memory and time per method, measured the paper's way (finetune.profiling).
# One job per (model, method, activation checkpointing); each job measures in fresh processes and
# holds every unit of `heavy` (2 in the default profile), so it runs alone: nothing else
# shares the machine while it is timed.
#
# Config (all optional, `profile:` section): models (default: study.models), methods (default
# lora, sft-ag, sft-ma; each method file names the frozen floor it is compared with, which is
# measured too), activation_checkpointing [false, true], the measurement's own settings (rank,
# batch_size, seq_len, steps, warmup_steps: finetune.profiling.spec.MeasureSpec's defaults),
# memory_granularity_gib, oom_retries (the CUDA cap search), timeout_s and resources
# (study.plan.PROFILE_DEFAULTS). The paper's Table 3 adds qlora, qsft-ag, qsft-ma: on this CPU
# they take another 17 min (docs/benchmarks.md has them measured); on CUDA list all six.
PROFILE = PLAN.profile_settings()


rule profile_measure:
    input:
        model=lambda w: PLAN.model_inputs(w.model),
    output:
        str(LAYOUT.profile_record("{model}", "{method}", "{ckpt}")),
    wildcard_constraints:
        ckpt="ckpt|nockpt",
    params:
        model=lambda w: PLAN.model_path(w.model),
        model_size=lambda w: PLAN.model_size(w.model),
        checkpointing=lambda w: w.ckpt == "ckpt",
        profile=PROFILE,
    log:
        f"{RESULTS}/logs/profile/{{model}}/{{method}}/{{ckpt}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/profile/{{model}}/{{method}}/{{ckpt}}.tsv"
    threads: PROFILE["resources"]["threads"]
    resources:
        mem_mb=lambda w, attempt: PROFILE["resources"]["mem_mb"] * attempt,
        runtime=lambda w, attempt: PROFILE["resources"]["runtime"] * attempt,
        gpu=PROFILE["resources"]["gpu"],
        heavy=2,
    script:
        "../scripts/profile_measure.py"


rule table3:
    input:
        records=PLAN.profile_inputs(),
        # the code that tabulates and draws: editing it reruns this rule (figures.smk says why)
        code=source_files("study.table3", "analysis.table3", "analysis.cost_model"),
    output:
        csv=report(f"{RESULTS}/table3.csv", caption="../report/table3.rst", category="Tables"),
        md=f"{RESULTS}/table3.md",
        png=report(f"{RESULTS}/figure_memory_time.png", caption="../report/table3.rst", category="Figures"),
    params:
        # the cost model's predicted columns read each model's config.json (analysis.cost_model)
        model_configs={model: PLAN.model_path(model) for model in PROFILE["models"]},
    log:
        f"{RESULTS}/logs/table3.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/profile_table.py"
