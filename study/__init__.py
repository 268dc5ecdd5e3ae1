"""The study's own steps, called by the Snakemake adapters in workflow/scripts/: what the config
plans (plan), and evaluating, collecting and tabulating runs (evaluate, collect). The top layer
of the harness: it may use every other package, and none uses it."""
