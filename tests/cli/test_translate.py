"""``tfkd translate``'s decoding overrides (each mistake one line naming the flag as typed) and
its input reader (any bytes: lines of text or one line naming the bad line)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tfkd.cli.translate import decode_overrides, read_input
from tfkd.errors import DataError, SpecError
from tfkd.tasks.translation import TranslationDecode


def test_overrides_apply_in_order():
    decode = decode_overrides(TranslationDecode(), ["decode.beam_size=3", "decode.length_penalty=0"])
    assert (decode.beam_size, decode.length_penalty) == (3, 0)


@pytest.mark.parametrize(
    "assignment, typed, message",
    [
        ("decode.beam_size=0", {"decode.beam_size=0": "--beam 0"}, "--beam 0: expected a number > 0, got 0"),
        ("decode.beam_size=0", None, "--set decode.beam_size=0: expected a number > 0, got 0"),
        ("decode.beam_sise=3", None, '--set decode.beam_sise=3: unknown key; did you mean "beam_size"? valid keys: '),
        ("train.steps=3", None, "--set train.steps=3: expected decode.KEY=VALUE (translate changes decoding only)"),
        ("decode.beam_size=[", None, "--set decode.beam_size=[: the value is not valid YAML"),
    ],
)
def test_a_mistake_names_the_flag(assignment, typed, message):
    with pytest.raises(SpecError) as error:
        decode_overrides(TranslationDecode(), [assignment], typed)
    assert str(error.value).startswith(message) and "\n" not in str(error.value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400) | st.lists(st.text(max_size=30), max_size=8).map(lambda ls: "\n".join(ls).encode()))
def test_any_bytes_on_stdin_are_lines_of_text_or_one_line_naming_the_bad_line(tmp_path_factory, data):
    """Whatever bytes come in: one str per line (no line end left in it, a Windows one dropped),
    or a DataError of one line naming the file and the first line that is not UTF-8."""
    path = tmp_path_factory.mktemp("input") / "in.de"
    path.write_bytes(data)
    raw_lines = data.split(b"\n")[: -1 if data.endswith(b"\n") else None] if data else []
    try:
        lines = read_input(str(path))
    except DataError as error:
        message = str(error)
        bad = next(n for n, line in enumerate(raw_lines, 1) if not _is_utf8(line.removesuffix(b"\r")))
        assert message.startswith(f"{path}:{bad}: not valid UTF-8 (") and "\n" not in message
        return
    assert [line.encode() for line in lines] == [line.removesuffix(b"\r") for line in raw_lines]
    assert all("\n" not in line for line in lines)


def _is_utf8(line):
    try:
        line.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
