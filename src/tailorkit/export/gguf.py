"""GGUF export of a Llama-architecture causal LM (SmolLM2 is one): tensors under llama.cpp's
names (the `gguf` package's own tensor-name map) at f32, f16 or Q8_0, the query and key
projections in llama.cpp's rotary layout, and the byte-level BPE tokenizer (vocabulary, merges,
special tokens, chat template) in the file's metadata. The parity check reads the file back with
transformers' GGUF reader, an implementation independent of this writer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import torch

from tailorkit.errors import TailorError
from tailorkit.export.parity import Runner
from tailorkit.models.handle import ModelHandle

MODEL_FILE = "model.gguf"
GgufType = Literal["f32", "f16", "q8_0"]
GGUF_TYPES: tuple[str, ...] = get_args(GgufType)
# the largest logit difference a type passes by default: f32 holds the weights bit for bit; f16
# and Q8_0 round them. Measured on SmolLM2-135M runs (docs/export.md, "GGUF types"): f16 up to
# 0.079, Q8_0 up to 2.74 (perplexity +0.3% to +0.8%); the defaults are about 2-3x those.
DEFAULT_TOLERANCE: dict[str, float] = {"f32": 1e-3, "f16": 0.25, "q8_0": 5.0}


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
    end_of_turn = _end_of_turn(tokenizer)
    # a reader that knows one EOS (transformers' GGUF loader) must stop where the run's replies
    # end: at ChatML's end of turn for a chat run, whatever the tokenizer calls its EOS
    eos = end_of_turn if end_of_turn is not None else tokenizer.eos_token_id
    for name, token_id in (("bos", tokenizer.bos_token_id), ("eos", eos), ("eot", end_of_turn),
                           ("pad", tokenizer.pad_token_id), ("unk", tokenizer.unk_token_id)):
        if token_id is not None:
            getattr(writer, f"add_{name}_token_id")(int(token_id))
    if tokenizer.chat_template:
        writer.add_chat_template(tokenizer.chat_template)


def _tensor_type(gguf_name: str, ndim: int, kind: str):
    """convert_hf_to_gguf.py's rule: 1-D tensors, norms and non-weights stay F32 (llama.cpp's
    kernels for them are F32 only); every other weight, the token embedding and output included,
    takes the file's type (llama.cpp keeps those two wider only for its ternary types)."""
    import gguf

    if ndim <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight"):
        return gguf.GGMLQuantizationType.F32
    return {"f32": gguf.GGMLQuantizationType.F32, "f16": gguf.GGMLQuantizationType.F16,
            "q8_0": gguf.GGMLQuantizationType.Q8_0}[kind]


def _encode(array: np.ndarray, qtype) -> tuple[np.ndarray, object]:
    """The tensor's bytes at `qtype`; F16 (as convert_hf_to_gguf.py does) for a row length that is
    not a whole number of Q8_0 blocks (32 values)."""
    import gguf

    try:
        return gguf.quants.quantize(array, qtype), qtype
    except gguf.QuantError:
        return gguf.quants.quantize(array, gguf.GGMLQuantizationType.F16), gguf.GGMLQuantizationType.F16


def _end_of_turn(tokenizer) -> int | None:
    """ChatML's <|im_end|> when the chat template closes turns with it (the run's generation
    stops there, tailorkit.data.templates.stop_token_ids); None otherwise."""
    template = tokenizer.chat_template or ""
    token_id = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if "<|im_end|>" not in template or not isinstance(token_id, int) or token_id == tokenizer.unk_token_id:
        return None
    return token_id


def export_gguf(handle: ModelHandle, out: Path, name: str, kind: GgufType = "f32") -> Path:
    """Write out/model.gguf from a plain (merged) Llama-architecture causal LM, its matrices at
    `kind` (f32, f16 or q8_0)."""
    import gguf

    if kind not in GGUF_TYPES:
        raise TailorError(f"--gguf-type {kind}: choose one of {', '.join(GGUF_TYPES)}")

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
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[kind])
    writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
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
        data, qtype = _encode(np.ascontiguousarray(array), _tensor_type(target, array.ndim, kind))
        writer.add_tensor(target, data, raw_dtype=qtype)
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
