# Evaluation: one process per model evaluates every benchmark its mixture's columns need in the
# tables that list its method (import and model load cost seconds). An untuned model (builder
# "untuned": original, original-4bit) is the run "<model>/none/<method>/default/seed0", with a
# method file and no training; so is a released model that a method file evaluates instead of
# training (the paper's Tulu v2 FullFT).


def eval_inputs(wildcards):
    run = run_of(wildcards)
    benches, roles = PLAN.evaluations_for(run.mixture, run.hp, run.method)
    inputs = {"model": PLAN.eval_model_inputs(run),
              "method": str(LAYOUT.method_file(run)),
              "data": sorted(set(PLAN.eval_data(run.mixture, run.hp, run.method).values())),
              "heldout": [f"{RESULTS}/data/mixtures/{r}.heldout.jsonl" for r in roles]}
    if PLAN.is_trained(run):
        inputs["run"] = str(LAYOUT.summary(run))
    return inputs


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        str(LAYOUT.eval_index(RUN)),
    params:
        model=lambda w: PLAN.eval_model_path(run_of(w)),
        benches=lambda w: PLAN.eval_settings(w.mixture, w.hp, w.method),
        data=lambda w: PLAN.eval_data(w.mixture, w.hp, w.method),
        heldout=config["heldout"],
    log:
        f"{RESULTS}/logs/evaluate/{RUN.key}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{RUN.key}.tsv"
    threads: job_resources("evaluate", "threads")
    resources:
        mem_mb=job_resources("evaluate", "mem_mb", grows=True),
        runtime=job_resources("evaluate", "runtime", grows=True),
        gpu=job_resources("evaluate", "gpu"),
        cpus_per_gpu=job_resources("evaluate", "cpus_per_gpu"),
        heavy=1,
    script:
        "../scripts/evaluate.py"
