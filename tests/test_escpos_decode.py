"""The test ESC/POS decoder, checked against streams other programs wrote."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest

from tests.escpos_decode import DecodeError, decode, split_jobs

pytestmark = pytest.mark.corpus


def php_strings(source: str, array: str) -> dict[str, str]:
    """The strings of one PHP array in escpos-php's test-string file."""
    body = source.split(f"${array} = array(", 1)[1].split(");", 1)[0]
    strings: dict[str, str] = {}
    entry = re.compile(
        r'"([^"]+)"\s*=>\s*(implode\("\\n", array\((.*?)\)\) \. "\\n"|"(.*?)")'
    )
    for match in entry.finditer(body):
        name, _, parts, plain = match.groups()
        if parts is not None:
            text = "\n".join(re.findall(r'"(.*?)"', parts)) + "\n"
        else:
            text = plain.replace("\\n", "\n")
        strings[name] = text
    return strings


def test_decode_character_encodings_gives_back_the_strings(corpus: Path) -> None:
    folder = corpus / "escpos" / "escpos-php"
    source = (folder / "character-encoding-test-strings.inc").read_text("utf-8")
    expected = php_strings(source, "inputsOk")
    assert len(expected) == 15  # every language of the source file was read

    decoded = decode((folder / "character-encodings.bin").read_bytes())
    text = decoded.text
    for name, string in expected.items():
        assert f"{name}:\n{string}" in text, name
    assert decoded.cuts == 1


@pytest.mark.parametrize(
    "name",
    [
        "escpos-php/character-tables.bin",
        "escpos-php/receipt-with-logo.bin",
        "escpos-php/barcode.bin",
        "escpos-php/demo.bin",
        "esc-pos-preview-tools/minimal.bin",
        "esc-pos-preview-tools/formatting.bin",
        "esc-pos-preview-tools/receipt.bin",
        "thermal/retail.bin",
    ],
)
def test_decode_corpus_streams_without_error(corpus: Path, name: str) -> None:
    decoded = decode((corpus / "escpos" / name).read_bytes())
    assert decoded.items


def test_decode_minimal_stream(corpus: Path) -> None:
    data = (corpus / "escpos" / "esc-pos-preview-tools" / "minimal.bin").read_bytes()
    decoded = decode(data)
    assert decoded.lines(48)[:2] == ["Hello, World!", "This is a test."]
    assert decoded.cuts == 1
    assert decoded.resets == 1


def test_decode_demo_finds_qr_codes_and_cuts(corpus: Path) -> None:
    decoded = decode((corpus / "escpos" / "escpos-php" / "demo.bin").read_bytes())
    assert "Testing 123" in decoded.qr_codes
    assert decoded.cuts >= 10


def html_lines(page: str) -> list[tuple[list[tuple[int, str, str]], str]]:
    """The renderer's lines: its spans (column, classes, text) and the line text."""
    lines = []
    for paragraph in re.findall(r"<p[^>]*>(.*?)</p>", page, re.S):
        spans = [
            (int(left) // 12, classes, html.unescape(text))
            for left, classes, text in re.findall(
                r"<span style='left: (\d+)px[^']*' class='([^']*)'>(.*?)</span>",
                paragraph,
                re.S,
            )
        ]
        if spans:
            lines.append((spans, "".join(text for _, _, text in spans)))
    return lines


def test_decode_thermal_receipt_matches_its_rendering(corpus: Path) -> None:
    folder = corpus / "escpos" / "thermal"
    expected = html_lines((folder / "test_receipt_1.bin.html").read_text("utf-8"))
    decoded = decode((folder / "test_receipt_1.bin").read_bytes())
    printed = [
        item for item in decoded.items if item.kind == "text" and item.text.strip()
    ]

    assert len(printed) == len(expected)
    for item, (spans, text) in zip(printed, expected, strict=True):
        assert item.text.split() == text.split()
        # Where the renderer used the normal font on the left, every word
        # sits in the same column as in the decoded line (tabs included).
        if item.align == "left" and not any("fb" in c for _, c, _ in spans):
            for column, _, word in spans:
                if word.strip():
                    assert item.text[column:].startswith(word.rstrip()), word

    styles = {item.text.split()[0]: item for item in printed}
    assert styles["Zebra"].bold and styles["Zebra"].height == 2
    assert styles["Total"].inverted
    assert styles["www.zebra.com"].upside_down and styles["www.zebra.com"].font == 1
    assert [i.text for i in decoded.items if i.kind == "barcode"] == ["123456"]


def test_decode_unknown_command_is_an_error() -> None:
    with pytest.raises(DecodeError, match="ESC 0x01"):
        decode(b"\x1b@\x1b\x01")


def test_decode_truncated_command_is_an_error() -> None:
    with pytest.raises(DecodeError, match="ends inside"):
        decode(b"\x1b@\x1dv0\x00\x10\x00\x10\x00\xff")


def test_split_jobs() -> None:
    assert split_jobs(b"\x1b@one\n\x1b@two\n") == [b"\x1b@one\n", b"\x1b@two\n"]
