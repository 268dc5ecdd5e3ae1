"""The cost model's activation inventory against what autograd really saves: a tiny Llama on
CPU (fp32), each tensor saved for the backward counted once by its storage (weights excluded),
per block (the difference between 4 and 2 blocks removes the embedding and the loss head).

The saved tensors are found by walking the graph (every node's ``_saved_*`` attributes, a
custom Function's ``saved_tensors``), not with ``saved_tensors_hooks``: under hooks sft.rebuild
stands down and the SFT layers save their inputs, which is not what a training run does."""
import pytest
import torch

from analysis.cost_model import Method, Setup
from analysis.cost_model.memory import block_activation_bytes
from analysis.cost_model.shapes import shape_from_config

CONFIG = {"model_type": "llama", "hidden_size": 64, "intermediate_size": 160, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 256, "max_position_embeddings": 128}
RANK, TOKENS = 4, 2 * 32


def build(method: str, layers: int):
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    from sft import SftConfig, get_sft_model, lora_equivalent_budget

    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(**{k: v for k, v in CONFIG.items() if k != "model_type"},
                                         num_hidden_layers=layers))
    if method == "original":
        model.requires_grad_(False)
        model.enable_input_require_grads()
    elif method == "lora":  # as baselines.peft_methods builds it (config/methods/lora.yaml)
        model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=16, lora_dropout=0.1,
                                                 target_modules="all-linear", task_type="CAUSAL_LM"),
                               autocast_adapter_dtype=True)
    else:
        budget = lora_equivalent_budget(model, RANK)
        model = get_sft_model(model, SftConfig(num_tunable_weights=budget, selection="ma"))
    return model.train()


def saved_bytes(model) -> int:
    weights = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers()]}
    ids = torch.randint(0, CONFIG["vocab_size"], (2, TOKENS // 2), generator=torch.Generator().manual_seed(0))
    loss = model(input_ids=ids, labels=ids).loss
    seen, visited, stack = {}, set(), [loss.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in visited:
            continue
        visited.add(id(node))
        held = [getattr(node, name) for name in dir(node) if name.startswith("_saved_")]
        held += list(getattr(node, "saved_tensors", ()))
        for value in held:
            for t in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in weights:
                    seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        stack.extend(next_node for next_node, _ in node.next_functions)
    loss.backward()
    return sum(seen.values())


@pytest.mark.parametrize("method", ["original", "sft-ma", "lora"])
def test_saved_activations_per_block_match_the_inventory(method):
    per_block = (saved_bytes(build(method, 4)) - saved_bytes(build(method, 2))) / 2 / TOKENS
    shape = shape_from_config({**CONFIG, "num_hidden_layers": 2}, "tiny", "tiny")
    predicted = block_activation_bytes(shape, Method.table3(method, RANK), Setup(1, TOKENS, False, "cpu"))
    assert per_block == pytest.approx(predicted, abs=1)
