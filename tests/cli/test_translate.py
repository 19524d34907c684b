"""``tfkd translate``'s decoding overrides: each mistake one line naming the flag as typed."""

import pytest

from tfkd.cli.translate import decode_overrides
from tfkd.errors import SpecError
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
