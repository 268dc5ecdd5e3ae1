# Table 4 / Figure 4 (hyperparameter grid) and Figure 3 (parameter ages). These rules read
# result files only, so regenerating a figure takes seconds and retrains nothing.


rule grid:
    input:
        PLAN.grid_inputs(),
    output:
        table=report(str(LAYOUT.grid_table()), caption="../report/table4.rst", category="Hyperparameters"),
        figure=report(f"{RESULTS}/figure4.png", caption="../report/figure4.rst", category="Hyperparameters"),
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


rule figure3:
    input:
        PLAN.sft_runs(),
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
