# Evaluation: one process per trained artifact evaluates every benchmark its mixture column
# needs (import and model load cost seconds). The untuned models are the runs
# "{model}/none/original/default/seed0" and "{model}/none/original-4bit/default/seed0".


def eval_inputs(wildcards):
    benches, roles = evaluations_for(wildcards.mixture, wildcards.hp)
    inputs = {"model": model_inputs(wildcards),
              "data": [f"{RESULTS}/data/evals/{b}.jsonl" for b in benches],
              "heldout": [f"{RESULTS}/data/mixtures/{r}.heldout.jsonl" for r in roles]}
    if wildcards.method not in UNTUNED:
        inputs["run"] = f"{RESULTS}/runs/{RUN}/train_summary.json".format(**wildcards)
    return inputs


rule evaluate:
    input:
        unpack(eval_inputs),
    output:
        f"{RESULTS}/evals/{RUN}/index.json",
    params:
        model=lambda w: model_path(w.model),
        benches=lambda w: {b: config["evals"][b] for b in evaluations_for(w.mixture, w.hp)[0]},
        heldout=config["heldout"],
    log:
        f"{RESULTS}/logs/evaluate/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{RUN}.tsv"
    threads: rule_resources("evaluate")["threads"]
    resources:
        mem_mb=rule_resources("evaluate")["mem_mb"],
        runtime=rule_resources("evaluate")["runtime"],
        gpu=rule_resources("evaluate")["gpu"],
        cpus_per_gpu=rule_resources("evaluate").get("cpus_per_gpu", 0),
        heavy=1,
    script:
        "../scripts/evaluate.py"
