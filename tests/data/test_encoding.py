"""`data.encoding: auto` (data/encoding.py): latin-1 and Windows-1252 files are read as written,
the detected encoding is named, and bytes no codec reads fail naming the file and line."""

from __future__ import annotations

import pytest

from tailorkit.config import DataConfig
from tailorkit.data.encoding import detect_encoding
from tailorkit.data.tables import read_table
from tailorkit.errors import TailorError

FRENCH = ["un café crème très agréable", "le théâtre était décevant", "à côté de la forêt",
          "où est la plage ? très bien", "mauvais goût, trop salé", "élève français naïf"]
LABELS = ["pos", "neg", "pos", "pos", "neg", "pos"]


def _csv(texts: list[str], sep: str = ",") -> str:
    return f"text{sep}label\n" + "".join(f"{t.replace(',', ' ')}{sep}{label}\n"
                                          for t, label in zip(texts, LABELS, strict=True))


@pytest.mark.parametrize("codec", ["latin-1", "cp1252"])
@pytest.mark.parametrize("name", ["data.csv", "data.tsv", "data.jsonl"])
def test_auto_reads_a_latin1_file_as_written_and_names_the_encoding(codec, name, tmp_path, capsys):
    path = tmp_path / name
    if name.endswith(".jsonl"):
        import json

        text = "".join(json.dumps({"text": t, "label": lab}, ensure_ascii=False) + "\n"
                       for t, lab in zip(FRENCH, LABELS, strict=True))
    else:
        text = _csv(FRENCH, "\t" if name.endswith(".tsv") else ",")
    path.write_bytes(text.encode(codec))
    frame = read_table(path, "data.train", "auto")
    expected = FRENCH if name.endswith(".jsonl") else [t.replace(",", " ") for t in FRENCH]
    assert frame["text"].tolist() == expected
    err = capsys.readouterr().err
    assert f"data.train: {path}: not UTF-8; read as cp1252 (detected by charset-normalizer" in err
    assert path.read_bytes() == text.encode(codec)  # the file is only read


def test_auto_on_utf8_says_nothing(tmp_path, capsys):
    path = tmp_path / "data.csv"
    path.write_text(_csv(FRENCH), encoding="utf-8")
    assert read_table(path, "data.train", "auto")["text"].iloc[0] == "un café crème très agréable"
    assert capsys.readouterr().err == ""


def test_cp1250_text_is_not_forced_into_cp1252():
    czech = "Příliš žluťoučký kůň úpěl ďábelské ódy. Šťastný žluťoučký kůň.\n" * 5
    assert detect_encoding(czech.encode("cp1250")) != "cp1252"


def test_bytes_no_codec_reads_name_the_file_and_line(tmp_path):
    path = tmp_path / "data.csv"
    path.write_bytes(b"text,label\nok,pos\n" + bytes(range(256)) * 8 + b",neg\n")
    assert detect_encoding(path.read_bytes()) is None
    with pytest.raises(TailorError, match=rf"^data.train: {path}: cannot detect the text encoding "
                                          r"\(line 4, column 118: byte 0x80 is not valid utf-8\); name it"):
        read_table(path, "data.train", "auto")


def test_the_recipe_field_takes_auto():
    assert DataConfig(train="x.csv", encoding="auto").encoding == "auto"
