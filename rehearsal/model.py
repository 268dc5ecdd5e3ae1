"""A tiny stand-in for Llama-2: the same architecture, tokenizer kind and folder layout.

`build_llama(out_dir, seed)` writes a normal Hugging Face folder, like meta-llama/Llama-2-7b-hf's:
- tokenizer.model: a SentencePiece BPE model trained in well under a second on the stand-ins'
  own text (`rehearsal.corpus`, `rehearsal.bbh`), with Llama-2's trainer settings: byte
  fallback, split digits, a dummy prefix, whitespace kept as is, unk/bos/eos = 0/1/2, no pad;
- tokenizer.json + tokenizer_config.json: the fast `LlamaTokenizer` over that model's pieces and
  merges, with Llama-2's tokenizer_config (add_bos_token, no eos, legacy false, pad null). Loaded
  with `AutoTokenizer`, it takes the same code path as Llama-2's own folder, so it treats leading
  spaces ("\u2581") as Llama-2 does under the installed transformers;
- config.json + model.safetensors + generation_config.json: a random `LlamaForCausalLM`
  (Llama-2's config with small sizes), stored in float16 like Llama-2; generation config as
  Llama-2-7b-hf's (do_sample, temperature 0.6, top_p 0.9, pad id 0).

Sizes: hidden 256, 2 layers, 4 heads (multi-head attention as 7b and 13b, no grouped KV),
intermediate 768. Not smaller, because the paper's budgets are LoRA rank 64 on every block
linear: SpIEL's equivalent budget r * (d_in + d_out) per matrix must fit in the matrices
(at hidden 64 it exceeds them; at 256 it is 40% of them). Every width is a multiple of 64, the
4-bit (NF4) block size. Deterministic given `seed`.

The tokenizer conversion extracts pieces and merges with the `sentencepiece` package itself
(`transformers`' converter would need `protobuf` too).
"""
from __future__ import annotations

import io
import json
from pathlib import Path

from artifacts.atomic import atomic_dir

MODEL_SIZES = {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 2,
               "num_attention_heads": 4, "num_key_value_heads": 4}
VOCAB_SIZE = 4000  # a ceiling: the trainer stops earlier when the text has no more merges
SPECIAL = {"unk": (0, "<unk>"), "bos": (1, "<s>"), "eos": (2, "</s>")}


def training_text(seed: int = 0) -> list[str]:
    """The lines the tokenizer is trained on: every stand-in's text, in the chat format too."""
    from rehearsal import corpus
    from rehearsal.bbh import bbh_items
    from rehearsal.hub_data import hub_datasets

    lines: list[str] = []

    def add(text: str) -> None:
        lines.extend(line for line in text.split("\n") if line.strip())

    for ds in hub_datasets(seed):
        for cfg in ds.configs:
            for rows in cfg.splits.values():
                for row in rows:
                    for value in row.values():
                        if isinstance(value, str):
                            add(value)
                        elif isinstance(value, list):  # Tulu messages, MMLU choices
                            for v in value:
                                add(v["content"] if isinstance(v, dict) else str(v))
                        elif isinstance(value, dict):  # TyDiQA answers
                            add(" ".join(map(str, value["text"])))
                    if "messages" in row:  # the chat format the study trains on (finetune.chat)
                        add("\n".join(f"<|{m['role']}|>\n{m['content']}" for m in row["messages"]))
    for item in corpus.humaneval_items():
        add(item["prompt"] + item["canonical_solution"])
    for rows in bbh_items(seed).values():
        for row in rows:
            add(f"Q: {row['input']}\nA: Let's think step by step. So the answer is {row['target']}.")
    return lines


def train_sentencepiece(lines: list[str], vocab_size: int = VOCAB_SIZE) -> bytes:
    """A serialized SentencePiece BPE model with Llama-2's trainer settings."""
    import sentencepiece as spm

    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines), model_writer=out, model_type="bpe", vocab_size=vocab_size,
        hard_vocab_limit=False, character_coverage=1.0, byte_fallback=True, split_digits=True,
        add_dummy_prefix=True, remove_extra_whitespaces=False, allow_whitespace_only_pieces=True,
        normalization_rule_name="identity", split_by_whitespace=True, max_sentence_length=1 << 16,
        unk_id=0, bos_id=1, eos_id=2, pad_id=-1, input_sentence_size=0,
        shuffle_input_sentence=False, num_threads=1, minloglevel=2)
    return out.getvalue()


def fast_tokenizer(sp_model: bytes):
    """The fast `LlamaTokenizer` over a SentencePiece BPE model's pieces and merges."""
    import sentencepiece as spm
    from transformers import LlamaTokenizer
    from transformers.convert_slow_tokenizer import generate_merges

    sp = spm.SentencePieceProcessor(model_proto=sp_model)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    for name, (idx, piece) in SPECIAL.items():
        if vocab.get(piece) != idx:
            raise AssertionError(f"SentencePiece put {piece!r} at {vocab.get(piece)}, not {idx}")
    specials = {piece for _, piece in SPECIAL.values()}
    merges = generate_merges(vocab, None, skip_tokens=specials)
    return LlamaTokenizer(vocab=vocab, merges=merges, unk_token="<unk>", bos_token="<s>",
                          eos_token="</s>", add_bos_token=True, add_eos_token=False, legacy=False,
                          padding_side="right", clean_up_tokenization_spaces=False,
                          use_default_system_prompt=False)


def _llama2_tokenizer_config(path: Path) -> None:
    """Spell out the keys Llama-2's tokenizer_config.json sets (save_pretrained drops defaults)."""
    cfg = json.loads(path.read_text())
    cfg.update(add_bos_token=True, add_eos_token=False, legacy=False, pad_token=None,
               sp_model_kwargs={})
    path.write_text(json.dumps(dict(sorted(cfg.items())), indent=2, ensure_ascii=False) + "\n")


def build_model(vocab_size: int, seed: int):
    """A random LlamaForCausalLM with Llama-2's configuration at small sizes, in float16."""
    import torch
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=vocab_size, max_position_embeddings=4096, hidden_act="silu",
                         rms_norm_eps=1e-5, rope_theta=10000.0, initializer_range=0.02,
                         tie_word_embeddings=False, attention_bias=False, pretraining_tp=1,
                         bos_token_id=1, eos_token_id=2, pad_token_id=None, use_cache=True,
                         **MODEL_SIZES)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(config)
    model.to(torch.float16)
    model.generation_config = GenerationConfig(bos_token_id=1, eos_token_id=2, pad_token_id=0,
                                               do_sample=True, temperature=0.6, top_p=0.9,
                                               max_length=4096)
    return model


def build_llama(out_dir: Path, seed: int = 0) -> Path:
    """Write the stand-in model folder at `out_dir` (atomically: into a folder beside it, then
    renamed into place).

    Same `seed`, same files' contents: the tokenizer text and training are deterministic, and
    the weights are drawn from a generator seeded with `seed`.
    """
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        sp_model = train_sentencepiece(training_text(seed))
        tokenizer = fast_tokenizer(sp_model)
        tokenizer.save_pretrained(tmp)
        (tmp / "tokenizer.model").write_bytes(sp_model)
        _llama2_tokenizer_config(tmp / "tokenizer_config.json")
        model = build_model(len(tokenizer), seed)
        model.save_pretrained(tmp)
        card = {"stand_in_for": "meta-llama/Llama-2-7b-hf, meta-llama/Llama-2-13b-hf",
                "seed": seed, "built_by": "python -m rehearsal", **MODEL_SIZES,
                "vocab_size": len(tokenizer)}
        (tmp / "rehearsal.json").write_text(json.dumps(card, indent=2) + "\n")
    return out_dir


def as_pytorch_shards(folder: Path, n_shards: int = 2) -> None:
    """Re-store the weights in `folder` as the released Tulu 2 repositories hold theirs:
    `pytorch_model-0000k-of-0000n.bin` shards (torch.save'd state dicts) and
    `pytorch_model.bin.index.json`, no safetensors (allenai/tulu-2-7b and -13b)."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    state = load_file(folder / "model.safetensors")
    names = sorted(state)
    per_shard = -(-len(names) // n_shards)
    weight_map = {}
    for k in range(n_shards):
        shard = f"pytorch_model-{k + 1:05d}-of-{n_shards:05d}.bin"
        part = {name: state[name].contiguous() for name in names[k * per_shard:(k + 1) * per_shard]}
        torch.save(part, folder / shard)
        weight_map.update(dict.fromkeys(part, shard))
    size = sum(t.numel() * t.element_size() for t in state.values())
    index = {"metadata": {"total_size": size}, "weight_map": weight_map}
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (folder / "model.safetensors").unlink()
