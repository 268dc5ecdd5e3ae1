"""Files and artifacts the harness stands on: atomic writes, JSONL reading, files fetched out of
pinned PyPI packages, and the results layout. Torch-free, and imports nothing else of the project,
so that every other harness package (finetune, evals, analysis, study) can use it."""
