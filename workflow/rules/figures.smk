# Table 4 (the grid's winners), Figure 4 (every grid point) and Figure 3 (parameter ages).
# These rules read result files only, so regenerating a figure takes seconds and retrains
# nothing. A figure's drawing code is among its inputs (`code`, study.code_files): editing it
# reruns that figure alone. Table 4 has no such input: table runs train with its winners, so
# rewriting it would retrain them.


rule grid:
    input:
        PLAN.grid_inputs(),
    output:
        report(str(LAYOUT.grid_table()), caption="../report/table4.rst", category="Hyperparameters"),
    params:
        score=PLAN.study["grid"]["score"],
    log:
        f"{RESULTS}/logs/grid.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/grid.py"


rule figure4:
    input:
        points=PLAN.grid_inputs(),
        code=source_files("analysis.figures", "study.collect"),
    output:
        report(f"{RESULTS}/figure4.png", caption="../report/figure4.rst", category="Hyperparameters"),
    params:
        score=PLAN.study["grid"]["score"],
    log:
        f"{RESULTS}/logs/figure4.log",
    threads: 1
    resources:
        mem_mb=2000,
        runtime=5,
    script:
        "../scripts/figure4.py"


rule figure3:
    input:
        runs=PLAN.sft_runs(),
        code=source_files("analysis.figures", "study.collect"),
    output:
        report(f"{RESULTS}/figure3.png", caption="../report/figure3.rst", category="Figures"),
    log:
        f"{RESULTS}/logs/figure3.log",
    threads: 1
    resources:
        mem_mb=4000,
        runtime=5,
    script:
        "../scripts/figure3.py"
