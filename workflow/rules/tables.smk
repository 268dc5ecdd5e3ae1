# Tables from result files only: regenerating them retrains nothing.


rule method_table:
    input:
        lambda w: PLAN.table_inputs(w.table),
    output:
        csv=report(f"{RESULTS}/{{table}}.csv", caption="../report/method_table.rst", category="Tables"),
        md=f"{RESULTS}/{{table}}.md",
        tex=f"{RESULTS}/{{table}}.tex",
        versus_csv=f"{RESULTS}/{{table}}_vs_reference.csv",
        versus_md=f"{RESULTS}/{{table}}_vs_reference.md",
    wildcard_constraints:
        table="table1|table2",
    params:
        planned=lambda w: PLAN.planned_runs(w.table),
    log:
        f"{RESULTS}/logs/{{table}}.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table.py"


rule paper_comparison:
    input:
        f"{RESULTS}/{{table}}.csv",
    output:
        md=f"{RESULTS}/{{table}}_vs_paper.md",
        csv=f"{RESULTS}/{{table}}_vs_paper.csv",
    wildcard_constraints:
        table="table1|table2|table3",
    params:
        models=PLAN.models_as_read(),
    log:
        f"{RESULTS}/logs/{{table}}_vs_paper.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/paper_comparison.py"
