# Preparation: packaged GGUF -> HF folder, hub models downloaded once, instruction mixtures,
# normalised benchmark files. These rules read the network (hub data) or only the disk, and run
# on the machine Snakemake runs on (localrules in the Snakefile), never on a GPU node.


if config.get("hub_standins"):

    rule hub_standins:
        output:
            f"{config['hub_mirror']}/.complete",
        log:
            f"{RESULTS}/logs/hub_standins.log",
        threads: 1
        resources:
            mem_mb=2000,
            runtime=10,
        script:
            "../scripts/hub_standins.py"


# `snakemake downloads`: every hub model this config needs, fetched on the machine you run it
# on (a login node with network), before any job is submitted.
rule downloads:
    input:
        [PLAN.hub_marker(repo) for repo in PLAN.hub_models()],


rule download_model:
    input:
        PLAN.mirror_inputs(),
    output:
        f"{RESULTS}/downloads/{{repo}}.json",
    params:
        repo_id=lambda w: w.repo.replace("--", "/", 1),
        mirror=config.get("hub_mirror"),
    log:
        f"{RESULTS}/logs/download_model/{{repo}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=240,
    retries: 2
    script:
        "../scripts/download_model.py"


rule prepare_model:
    output:
        f"{CACHE}/models/{{model}}/config.json",
    params:
        entry=lambda w: config["models"][w.model],
    log:
        f"{RESULTS}/logs/prepare_model/{{model}}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    script:
        "../scripts/prepare_model.py"


rule build_mixture:
    input:
        PLAN.mirror_inputs(),
    output:
        f"{RESULTS}/data/mixtures/{{mixture}}.jsonl",
    params:
        spec=lambda w: PLAN.mixture_spec(w.mixture),
        catalogue=PLAN.mixture_catalogue(),
    log:
        f"{RESULTS}/logs/build_mixture/{{mixture}}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/build_mixture.py"


rule split_heldout:
    input:
        f"{RESULTS}/data/mixtures/{{mixture}}.jsonl",
    output:
        train=f"{RESULTS}/data/mixtures/{{mixture}}.train.jsonl",
        heldout=f"{RESULTS}/data/mixtures/{{mixture}}.heldout.jsonl",
    params:
        n=config["heldout"]["n_examples"],
        seed=config["heldout"]["seed"],
    log:
        f"{RESULTS}/logs/split_heldout/{{mixture}}.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/split_heldout.py"


rule prepare_benchmark:
    input:
        PLAN.mirror_inputs(),
    output:
        data=f"{RESULTS}/data/evals/{{bench}}.jsonl",
        manifest=f"{RESULTS}/data/evals/{{bench}}.jsonl.manifest.json",
    params:
        cfg=lambda w: PLAN.bench_config(w.bench),
    log:
        f"{RESULTS}/logs/prepare_benchmark/{{bench}}.log",
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    script:
        "../scripts/prepare_benchmark.py"


# The grid's dev score reads another split of its benchmark (study.grid.split).
use rule prepare_benchmark as prepare_benchmark_split with:
    output:
        data=f"{RESULTS}/data/evals/{{bench}}.{{split}}.jsonl",
        manifest=f"{RESULTS}/data/evals/{{bench}}.{{split}}.jsonl.manifest.json",
    wildcard_constraints:
        split="validation",
    params:
        cfg=lambda w: PLAN.bench_config(w.bench, w.split),
    log:
        f"{RESULTS}/logs/prepare_benchmark/{{bench}}.{{split}}.log",


# Answer likelihoods ("<bench>_bpb") with their own subset size (evals.<bench>.bpb_items): the same
# source and exemplars, more items (evals.data.prepare_benchmark's select_cfg).
use rule prepare_benchmark as prepare_benchmark_bpb with:
    output:
        data=f"{RESULTS}/data/evals/{{bench}}.bpb.jsonl",
        manifest=f"{RESULTS}/data/evals/{{bench}}.bpb.jsonl.manifest.json",
    params:
        cfg=lambda w: PLAN.bench_config(w.bench),
        select_cfg=lambda w: PLAN.bpb_items(w.bench),
    log:
        f"{RESULTS}/logs/prepare_benchmark/{{bench}}.bpb.log",
