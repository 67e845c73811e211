from __future__ import annotations

from generation.guard import check, sentences

SOURCE = (
    "Quarterly profits at US media giant Time Warner jumped 76% to $1.13bn (£600m) for the "
    "three months to December. Chief executive Richard Parsons said 1,200 jobs were safe."
)


def test_faithful_output_passes() -> None:
    for output in (
        "Time Warner profits jump 76%",
        "Richard Parsons says 1200 jobs at Time Warner are safe",
        "Profits at Time Warner rose in three months to December",
        "Strong quarter: Time Warner profit up 76%",
    ):
        report = check(output, [SOURCE])
        assert report.grounded, (output, report)
        assert report.checked >= 1


def test_invented_number_is_caught() -> None:
    report = check("Time Warner profits jump 67%", [SOURCE])
    assert not report.grounded and report.unsupported == ["67"]
    assert "67" in (report.reason() or "")


def test_invented_name_is_caught() -> None:
    report = check("Richard Branson praises Time Warner results", [SOURCE])
    assert report.unsupported == ["Branson"]


def test_number_words_match_digits_both_ways() -> None:
    assert check("Profits rose over 3 months", [SOURCE]).grounded
    assert not check("Profits rose over four months", [SOURCE]).grounded


def test_sentences_split_on_terminal_punctuation() -> None:
    assert sentences("One. Two? Three!\nFour") == ["One.", "Two?", "Three!", "Four"]
