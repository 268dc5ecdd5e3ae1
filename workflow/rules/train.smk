# One training run per (model, mixture, method, hyperparameter tag, seed), all through
# finetune.train. The `hp` wildcard is "default" (Table 4 defaults plus config overrides) or a
# grid point such as "lr=0.0001,r=16" (Figure 4; see grid_points in common.smk).
# A run with resources.train.gpu > 1 trains on that many GPUs under torchrun (scripts/train.py).


def method_overrides(wildcards):
    return {**config["method_overrides"].get(wildcards.method, {}), **parse_hp(wildcards.hp)}


rule train:
    input:
        model=model_inputs,
        data=f"{RESULTS}/data/mixtures/{{mixture}}.train.jsonl",
    output:
        f"{RESULTS}/runs/{RUN}/train_summary.json",
    params:
        model=lambda w: model_path(w.model),
        model_size=lambda w: config["models"][w.model]["size"],
        overrides=method_overrides,
        train_cfg=config["train"],
    log:
        f"{RESULTS}/logs/train/{RUN}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN}.tsv"
    threads: rule_resources("train")["threads"]
    resources:
        mem_mb=rule_resources("train")["mem_mb"],
        runtime=rule_resources("train")["runtime"],
        gpu=rule_resources("train")["gpu"],
        cpus_per_gpu=rule_resources("train").get("cpus_per_gpu", 0),
        heavy=1,
    script:
        "../scripts/train.py"
