# Tables from result files only: regenerating them retrains nothing.


rule table1:
    input:
        lambda w: table_inputs("table1"),
    output:
        csv=f"{RESULTS}/table1.csv",
        md=f"{RESULTS}/table1.md",
        tex=f"{RESULTS}/table1.tex",
    params:
        table="table1",
        planned=lambda w: planned_runs("table1"),
        unavailable=lambda w: {b: unavailable(b) for b in BENCHMARKS if unavailable(b)},
    log:
        f"{RESULTS}/logs/table1.log",
    threads: 1
    resources:
        mem_mb=1000,
        runtime=5,
    script:
        "../scripts/table.py"
