"""The argument types the commands share."""

import argparse

import pytest

from tfkd.cli.arguments import seed_list


def test_seeds_are_different_integers_in_numpys_range():
    assert seed_list("1, 2,3") == [1, 2, 3]
    assert seed_list(f"0,{2**32 - 1}") == [0, 2**32 - 1]


@pytest.mark.parametrize("text", ["-1", "1,-2", str(2**32), "1,x", "1,,2", "1.5"])
def test_a_seed_out_of_range_or_not_an_integer_is_named(text):
    with pytest.raises(argparse.ArgumentTypeError, match=f"from 0 to 4294967295 such as 1,2,3, got '{text}'"):
        seed_list(text)


def test_the_same_seed_twice_is_named():
    with pytest.raises(argparse.ArgumentTypeError, match="expected different seeds, got '1,1'"):
        seed_list("1,1")
