"""GGUF export of a Llama-architecture causal LM (SmolLM2 is one): fp32 tensors under
llama.cpp's names (the `gguf` package's own tensor-name map), the query and key projections
in llama.cpp's rotary layout, and the byte-level BPE tokenizer (vocabulary, merges, special
tokens, chat template) in the file's metadata. The parity check reads the file back with
transformers' GGUF reader, an implementation independent of this writer."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from tailorkit.errors import TailorError
from tailorkit.export.parity import Runner
from tailorkit.models.handle import ModelHandle

MODEL_FILE = "model.gguf"


def _llama_rotary(weight: np.ndarray, heads: int) -> np.ndarray:
    """Hugging Face's rotate-half layout to llama.cpp's interleaved one (convert_hf_to_gguf's permute)."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def _tokenizer_metadata(writer, tokenizer) -> None:
    import gguf

    state = json.loads(tokenizer.backend_tokenizer.to_str())
    model = state["model"]
    pre = (state.get("pre_tokenizer") or {}).get("type")
    if model.get("type") != "BPE" or pre not in ("ByteLevel", "Sequence"):
        raise TailorError("GGUF export: only byte-level BPE tokenizers (GPT-2 style, as SmolLM2's) are "
                          f"written; this one is {model.get('type')}")
    vocab = tokenizer.get_vocab()
    tokens = [""] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    special = set(tokenizer.all_special_ids)
    special |= {t["id"] for t in state.get("added_tokens", []) if t["special"]}
    types = [int(gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL)
             for i in range(len(tokens))]
    merges = [m if isinstance(m, str) else " ".join(m) for m in model.get("merges", [])]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges(merges)
    for name, token_id in (("bos", tokenizer.bos_token_id), ("eos", tokenizer.eos_token_id),
                           ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
        if token_id is not None:
            getattr(writer, f"add_{name}_token_id")(int(token_id))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def export_gguf(handle: ModelHandle, out: Path, name: str) -> Path:
    """Write out/model.gguf from a plain (merged) Llama-architecture causal LM."""
    import gguf

    model, cfg = handle.model, handle.model.config
    if cfg.model_type != "llama":
        raise TailorError(f"GGUF export: the model is a {cfg.model_type}; only Llama-architecture models "
                          "(SmolLM2, Llama, TinyLlama) are written")
    path = out / MODEL_FILE
    writer = gguf.GGUFWriter(str(path), "llama")
    heads, kv_heads = cfg.num_attention_heads, cfg.num_key_value_heads or cfg.num_attention_heads
    rope = ((getattr(cfg, "rope_parameters", None) or {}).get("rope_theta")
            or getattr(cfg, "rope_theta", 10000.0))
    writer.add_name(name)
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv_heads)
    writer.add_rope_dimension_count(getattr(cfg, "head_dim", None) or cfg.hidden_size // heads)
    writer.add_rope_freq_base(float(rope))
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(cfg.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    _tokenizer_metadata(writer, handle.tokenizer)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, cfg.num_hidden_layers)
    state = model.state_dict()
    tied = cfg.tie_word_embeddings
    for key, tensor in state.items():
        if key == "lm_head.weight" and tied:
            continue  # llama.cpp reads the embedding as the output layer when output.weight is absent
        target = names.get_name(key, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise TailorError(f"GGUF export: no llama.cpp name for tensor {key}")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if key.endswith("q_proj.weight"):
            array = _llama_rotary(array, heads)
        elif key.endswith("k_proj.weight"):
            array = _llama_rotary(array, kv_heads)
        writer.add_tensor(target, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def gguf_runner(path: Path) -> Runner:
    """Batch -> logits of the file as transformers' GGUF reader loads it."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name).eval()

    @torch.inference_mode()
    def run(batch: dict[str, torch.Tensor]) -> np.ndarray:
        return model(**batch).logits.float().numpy()

    return run


def tokenizer_agreement(path: Path, tokenizer, texts: list[str]) -> float:
    """Share of `texts` that the tokenizer rebuilt from the file's metadata (by transformers)
    splits into exactly the run's token ids."""
    from transformers import AutoTokenizer

    rebuilt = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    same = [tokenizer(t)["input_ids"] == rebuilt(t)["input_ids"] for t in texts]
    return sum(same) / max(len(same), 1)
