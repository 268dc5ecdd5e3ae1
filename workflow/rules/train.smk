# One training run per (model, mixture, method, hyperparameter tag, seed), all through
# finetune.train. The `hp` wildcard is "default" (method file plus config overrides) or a grid
# point such as "lr=0.0001,r=16" (Figure 4; study.plan.Plan.grid_points); a "default" run of a
# method the grid searches on its model trains with the grid's winner (Table 4). The method is
# resolved once into the run folder (method.json); training, the torchrun processes of a
# multi-GPU run, evaluation, the grid and the tables' setting column all read that file.


rule resolve_method:
    input:
        # Table 4, for a table run that trains with the grid's winner (study.grid.apply_winners);
        # grid points never read it (study.plan.Plan.takes_grid_winner)
        lambda w: PLAN.method_inputs(run_of(w)),
    output:
        str(LAYOUT.method_file(RUN)),
    params:
        # the resolution before the winner: a changed method file or override reruns the job
        base=lambda w: PLAN.base_method(run_of(w)),
    log:
        f"{RESULTS}/logs/resolve_method/{RUN.key}.log",
    threads: 1
    resources:
        mem_mb=500,
        runtime=2,
    script:
        "../scripts/resolve_method.py"


rule train:
    input:
        model=lambda w: PLAN.model_inputs(w.model),
        data=f"{RESULTS}/data/mixtures/{{mixture}}.train.jsonl",
        method=str(LAYOUT.method_file(RUN)),
    output:
        str(LAYOUT.summary(RUN)),
    params:
        model=lambda w: PLAN.model_path(w.model),
        train_cfg=config["train"],
        # the grid's points on this run's mixture: a table run reuses the winner's training
        donors=lambda w: PLAN.training_donors(run_of(w)),
    log:
        f"{RESULTS}/logs/train/{RUN.key}.log",
    benchmark:
        f"{RESULTS}/benchmarks/train/{RUN.key}.tsv"
    threads: job_resources("train", "threads")
    resources:
        mem_mb=job_resources("train", "mem_mb", grows=True),
        runtime=job_resources("train", "runtime", grows=True),
        gpu=job_resources("train", "gpu"),
        cpus_per_gpu=job_resources("train", "cpus_per_gpu"),
        gpu_mem_mb=job_resources("train", "gpu_mem_mb"),  # with resources.train.mem_from_cost_model
        heavy=1,
    script:
        "../scripts/train.py"
