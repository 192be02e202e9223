"""Conversations → token ids and labels that train only the assistant's replies.

The text is rendered by the tokenizer's own chat template, or by a named one
from TEMPLATES when it has none (or the recipe asks for one). Labels copy the
ids of every assistant reply, including the end-of-turn token that closes it
(so the model learns to stop), and are -100 on everything else.

The replies are found by rendering incrementally: the text up to a reply's
generation prompt must be a prefix of the text through that reply, and both a
prefix of the whole conversation; the difference is the reply. A template for
which this does not hold is refused with an error rather than trained with a
silently wrong mask. The whole text is tokenized once, exactly as
`apply_chat_template(tokenize=True)` does, and the reply's characters are
mapped to tokens by their offsets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from jinja2 import TemplateError

from tailorkit.data.instructions import TEXT_ROLE, Conversation
from tailorkit.errors import TailorError

IGNORE = -100  # the label torch's cross-entropy skips

_CHATML = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '<|im_start|>assistant\n' }}{%- endif -%}"
)
_ALPACA = (
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{ messages[0]['content'] + '\n\n' }}{%- set turns = messages[1:] -%}"
    "{%- else -%}"
    "{{ 'Below is an instruction that describes a task. "
    "Write a response that appropriately completes the request.\n\n' }}"
    "{%- set turns = messages -%}"
    "{%- endif -%}"
    "{%- for message in turns -%}"
    "{%- if message['role'] == 'user' -%}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}"
    "{%- else -%}{{ raise_exception('the alpaca template takes a system message only first, "
    "then user and assistant turns; got ' + message['role']) }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{ '### Response:\n' }}{%- endif -%}"
)
_PLAIN = (
    "{%- for message in messages -%}"
    "{%- if message['role'] == 'system' -%}{{ message['content'] + '\n\n' }}"
    "{%- elif message['role'] == 'user' -%}{{ message['content'] + '\n' }}"
    "{%- else -%}{{ message['content'] + eos_token + '\n' }}"
    "{%- endif -%}"
    "{%- endfor -%}"
)

# Templates for tokenizers without a chat template of their own (base models).
# chatml: the <|im_start|>/<|im_end|> layout of Qwen and SmolLM; needs both as tokens.
# alpaca: "### Instruction / ### Response" (Stanford Alpaca); replies end with eos_token.
# plain:  the prompt, a newline, then the reply and eos_token; no markup at all.
TEMPLATES: dict[str, str] = {"chatml": _CHATML, "alpaca": _ALPACA, "plain": _PLAIN}
TEMPLATE_TOKENS: dict[str, tuple[str, ...]] = {"chatml": ("<|im_start|>", "<|im_end|>")}


def resolve_template(tokenizer, template: str | None) -> str:
    """The Jinja template render() uses: `template` (a name or Jinja text), else the tokenizer's own.

    Save it as `tokenizer.chat_template` with a fine-tuned model so that
    inference later formats prompts exactly as training did.
    """
    if template is None:
        own = getattr(tokenizer, "chat_template", None)
        if isinstance(own, dict):  # several named templates: the default one is for chat
            own = own.get("default")
        if not own:
            raise TailorError(
                f"the tokenizer has no chat template; name one of {', '.join(TEMPLATES)} "
                "as the chat template for this model"
            )
        return own
    if "{{" in template or "{%" in template:
        return template  # the user's own Jinja template
    if template not in TEMPLATES:
        raise TailorError(
            f"unknown chat template '{template}'; use one of {', '.join(TEMPLATES)} or Jinja text"
        )
    if "eos_token" in TEMPLATES[template] and tokenizer.eos_token is None:
        raise TailorError(f"the {template} template ends each reply with eos_token, "
                          "but the tokenizer has none; set tokenizer.eos_token")
    split = _split_tokens(tokenizer, template)
    if split:
        raise TailorError(
            f"the {template} template needs {' and '.join(split)} as single tokens, and this tokenizer "
            "splits them; use the alpaca or plain template, or add them (add_template_tokens) and resize "
            "the model's embeddings"
        )
    return ("{{ bos_token }}" if _adds_bos(tokenizer) else "") + TEMPLATES[template]


def stop_token_ids(tokenizer) -> list[int]:
    """EOS plus ChatML's end of turn, which chat models emit at the end of an answer: the tokens
    generation stops on, so a trained reply must end with one of them."""
    ids = {tokenizer.eos_token_id}
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end_of_turn, int) and end_of_turn != tokenizer.unk_token_id:
        ids.add(end_of_turn)
    return sorted(i for i in ids if i is not None)


def add_template_tokens(tokenizer, template: str | None) -> int:
    """Add the special tokens a named template needs; returns how many were new.

    When it returns more than 0 the model needs `resize_token_embeddings(len(tokenizer))`.
    """
    tokens = _split_tokens(tokenizer, template or "")
    if not tokens:
        return 0
    return tokenizer.add_special_tokens({"extra_special_tokens": tokens}, replace_extra_special_tokens=False)


def _split_tokens(tokenizer, template: str) -> list[str]:
    """The tokens a named template needs that this tokenizer does not keep whole."""
    return [token for token in TEMPLATE_TOKENS.get(template, ())
            if len(tokenizer(token, add_special_tokens=False)["input_ids"]) != 1]


def _adds_bos(tokenizer) -> bool:
    """Whether encoding puts BOS in front (Llama-style); named templates then do the same."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return False
    plain = tokenizer("x", add_special_tokens=False)["input_ids"]
    return tokenizer("x")["input_ids"][:1] == [bos] and plain[:1] != [bos]


def _text(tokenizer, jinja: str, messages: Conversation, generation: bool) -> str:
    try:
        return tokenizer.apply_chat_template(
            messages, chat_template=jinja, tokenize=False, add_generation_prompt=generation)
    except TemplateError as err:
        raise TailorError(f"the chat template cannot render this conversation: {err}") from None


def _is_document(messages: Conversation) -> bool:
    return any(m["role"] == TEXT_ROLE for m in messages)


def _document(messages: Conversation, tokenizer, prompt: bool) -> list[int] | None:
    """Token ids of a plain document (the `text` format), or None for a conversation."""
    if not _is_document(messages):
        return None
    if len(messages) != 1:
        raise TailorError(f"a '{TEXT_ROLE}' message stands alone; it cannot be part of a conversation")
    ids = list(tokenizer(messages[0]["content"])["input_ids"])  # BOS as the tokenizer adds it
    eos = tokenizer.eos_token_id
    if not prompt and eos is not None and ids[-1:] != [eos]:
        ids.append(eos)  # the model learns where a document ends
    return ids


def _reply_spans(tokenizer, jinja: str, messages: Conversation, whole: str) -> list[tuple[int, int]]:
    """Character span of each assistant reply in `whole`, end-of-turn token included.

    A reply starts where the text rendered up to its generation prompt ends and
    stops where the text rendered through it ends, less the whitespace a template
    writes after the end-of-turn token (the model never has to generate it).
    """
    spans = []
    for turn, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        before = _text(tokenizer, jinja, messages[:turn], generation=True)
        through = _text(tokenizer, jinja, messages[: turn + 1], generation=False)
        if not (through.startswith(before) and whole.startswith(through)):
            raise TailorError(
                f"the chat template renders turn {turn + 1} differently once later turns follow, "
                "so its reply cannot be located for the loss mask; use another template"
            )
        spans.append((len(before), max(len(before), len(through.rstrip()))))
    return spans


def _ids(tokenizer, text: str) -> list[int]:
    # The template writes BOS and friends itself, as apply_chat_template(tokenize=True) assumes.
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _label_ranges(tokenizer, whole: str, ids: list[int],
                  spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The token range of each character span.

    Fast tokenizers: the tokens that start inside the span, by their offsets (a
    token that merges prompt and reply whitespace stays unlabelled). Slow ones
    have no offsets: the text before a span and the text through it must
    tokenize to prefixes of the whole, or the mask cannot be trusted.
    """
    if tokenizer.is_fast:
        offsets = tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        ranges = []
        for a, b in spans:
            inside = [i for i, (start, _) in enumerate(offsets) if a <= start < b]
            ranges.append((inside[0], inside[-1] + 1) if inside else (0, 0))
        return ranges
    ranges = []
    for a, b in spans:
        before, through = _ids(tokenizer, whole[:a]), _ids(tokenizer, whole[:b])
        if through[: len(before)] != before or ids[: len(through)] != through:
            raise TailorError(
                "tokens merge across the start or end of an assistant reply (for example a "
                "generation prompt that ends with a space), so the loss mask would be wrong; "
                "use another template or a fast tokenizer"
            )
        ranges.append((len(before), len(through)))
    return ranges


def encode(messages: Conversation, tokenizer, template: str | None) -> tuple[list[int], list[int]]:
    """Token ids and labels of a whole conversation (no truncation); see render()."""
    document = _document(messages, tokenizer, prompt=False)
    if document is not None:
        return document, list(document)
    jinja = resolve_template(tokenizer, template)
    whole = _text(tokenizer, jinja, messages, generation=False)
    ids = _ids(tokenizer, whole)
    labels = [IGNORE] * len(ids)
    for start, end in _label_ranges(tokenizer, whole, ids, _reply_spans(tokenizer, jinja, messages, whole)):
        labels[start:end] = ids[start:end]
    return ids, labels


def render(messages: Conversation, tokenizer, template: str | None,
           max_length: int) -> tuple[list[int], list[int]]:
    """Token ids and labels (-100 outside assistant replies), cut to max_length keeping the start.

    Uses the tokenizer's chat template when `template` is None, else the named
    (or Jinja) template. A plain document ([{"role": "text", ...}]) needs no
    template: all its tokens are labels, with BOS as the tokenizer adds it and
    EOS appended when the tokenizer has one.
    """
    ids, labels = encode(messages, tokenizer, template)
    return ids[:max_length], labels[:max_length]


def prompt_ids(messages: Conversation, tokenizer, template: str | None) -> list[int]:
    """The prompt for generating the next reply (rendered with add_generation_prompt=True).

    A final assistant turn is left out: it is the reference answer. A plain
    document gives its own tokens without EOS, for the model to continue.
    """
    document = _document(messages, tokenizer, prompt=True)
    if document is not None:
        return document
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return _ids(tokenizer, _text(tokenizer, resolve_template(tokenizer, template), messages, generation=True))


@dataclass
class RenderedChats:
    """A split's examples, ready for batching, with what truncation cost."""

    input_ids: list[list[int]]
    labels: list[list[int]]
    truncated: list[int] = field(default_factory=list)  # rows cut to max_length
    unlabelled: list[int] = field(default_factory=list)  # rows with no trained token left

    def __len__(self) -> int:
        return len(self.input_ids)


def render_all(conversations: Sequence[Conversation], tokenizer, template: str | None, max_length: int,
               source: str, rows: Sequence[int] | None = None) -> RenderedChats:
    """render() every conversation; errors name `source` and the 1-based row (from `rows`)."""
    rows = list(rows) if rows is not None else list(range(1, len(conversations) + 1))
    if not all(_is_document(messages) for messages in conversations):
        template = resolve_template(tokenizer, template)  # once, not per row: passed on as Jinja text
    out = RenderedChats([], [])
    for row, messages in zip(rows, conversations, strict=True):
        try:
            ids, labels = encode(messages, tokenizer, template)
        except TailorError as err:
            raise TailorError(f"{source}: row {row}: {err}") from None
        if len(ids) > max_length:
            out.truncated.append(row)
            ids, labels = ids[:max_length], labels[:max_length]
        if all(label == IGNORE for label in labels[1:]):  # the first label is never predicted
            out.unlabelled.append(row)
        out.input_ids.append(ids)
        out.labels.append(labels)
    return out
