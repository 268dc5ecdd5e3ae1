"""Alpaca-format rows (`instruction`, `input`, `output`: GPT4-Alpaca) as the reference encodes them.

open-instruct's `reformat_datasets.convert_gpt4_alpaca_data` turns each example into one user
and one assistant message through `instruction_encode_templates.encode_instruction_example`
with `random_template=True`: a (prompt, completion) template pair drawn per example, weighted,
from one list for examples with an input and another for those without. The pairs and weights
below are that file's (data, not code: the prompts must be the same strings). Its draw comes from
Python's global random stream, unseeded there, so it cannot be replayed; here each example draws
from its own seeded stream (`seed`, the row's index), so a mixture is reproducible and does not
depend on the order rows are read in.
"""
from __future__ import annotations

import random

# (prompt template, completion template, weight), as open-instruct's instruction_encode_templates
WITH_INPUT = [
    ("{instruction}\n\n{input}\n\n", "{output}", 0.2),
    ("{instruction}\n{input}\n\n", "{output}", 0.1),
    ("{instruction}\n{input}\n", "{output}", 0.1),
    ("{instruction}\n\nInput: {input}\n\nOutput:", "{output}", 0.05),
    ("{instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("{instruction}\n{input}\n\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAdditional Context:\n{input}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\n", "{output}", 0.05),
    ("Task: {instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n{input}\n\nAnswer:", "{output}", 0.05),
    ("{instruction}\n\nNow complete the following instance -\nInput: {input}\nOutput:", "{output}", 0.05),
    ("Instruction:{instruction}\n\nInput: {input}\n\n", "{output}", 0.05),
    ("Below is an instruction that describes a task, paired with an input that provides further "
     "context. Write a response that appropriately completes the request.\n\n"
     "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:", "{output}", 0.1),
]
WITHOUT_INPUT = [
    ("{instruction}\n\n", "{output}", 0.2),
    ("{instruction}\n", "{output}", 0.1),
    ("{instruction}", "\n{output}", 0.1),
    ("{instruction} Output:", "{output}", 0.05),
    ("{instruction}\nResponse:", "{output}", 0.05),
    ("{instruction}\n\nAnswer:", "{output}", 0.05),
    ("Task: {instruction}\n\n", "{output}", 0.05),
    ("Instruction: {instruction}\n", "{output}", 0.05),
    ("Instruction: {instruction}\nOutput:", "{output}", 0.05),
    ("You need to complete the following task:\n\n{instruction}\n\n", "{output}", 0.05),
    ("Can you help with this?\n\n{instruction}\n", "{output}", 0.05),
    ("Plase answer the following request: {instruction}\nAnswer:", "{output}", 0.05),  # sic
    ("Tell me how would you respond to the following request.\n{instruction}\n", "{output}", 0.05),
    ("Write a response that appropriately completes the request.\n\n### Instruction:\n"
     "{instruction}\n\n### Response:", "{output}", 0.1),
]


def encode(instruction: str, input_text: str | None, output: str, rng: random.Random) -> list[dict]:
    """One user and one assistant message, through a template drawn from `rng` by weight."""
    has_input = input_text is not None and input_text.strip() != ""
    table = WITH_INPUT if has_input else WITHOUT_INPUT
    prompt, completion, _ = rng.choices(table, weights=[w for _, _, w in table])[0]
    fields = {"instruction": instruction.strip(), "input": (input_text or "").strip()}
    return [{"role": "user", "content": prompt.format(**fields)},
            {"role": "assistant", "content": completion.format(output=output.strip())}]


def example_rng(seed: int, index: int) -> random.Random:
    """The stream example `index` draws its template from."""
    return random.Random(f"alpaca:{seed}:{index}")
