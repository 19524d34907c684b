"""What every export's signatures do to what a server may be sent
(tfkd/exporters/text_saved_model.py, ``bounded_endpoint``): a request cut into calls of
``batch_size`` lines whose outputs are those of one call, an empty request, bytes that are not
UTF-8, lines cut to ``max_input_chars`` characters."""

import numpy as np
import tensorflow as tf

from tfkd.exporters.text_saved_model import bounded_endpoint

LINES = ["a", "bb b", "", "ccc cc c", "d", "ee", "fffffff"]


def make_function():
    """A task's function stand-in: each line, its length in characters, its code points padded
    to the longest line of the call (as a language model's per-token outputs are), a fixed-width
    pair (as n-best outputs are); and a count of its calls."""
    calls = tf.Variable(0)

    def function(lines):
        calls.assign_add(1)
        codes = tf.strings.unicode_decode(lines, "UTF-8")
        return {
            "echo": lines,
            "length": tf.cast(codes.row_lengths(), tf.int32),
            "codes": codes.to_tensor(0),
            "pair": tf.stack([lines, tf.strings.upper(lines)], axis=1),
        }

    return function, calls


def serve(lines, lines_per_call=3, max_input_chars=100, dtype=tf.string):
    function, calls = make_function()
    bounded = tf.function(
        bounded_endpoint(function, lines_per_call, max_input_chars), input_signature=[tf.TensorSpec([None], dtype)]
    )
    outputs = bounded(tf.constant(lines, dtype))
    return {k: v.numpy() for k, v in outputs.items()}, int(calls.numpy())


def test_a_request_in_calls_of_batch_size_lines_gives_one_call_s_outputs():
    function, _ = make_function()
    whole = {k: v.numpy() for k, v in function(tf.constant(LINES)).items()}
    chunked, calls = serve(LINES, lines_per_call=3)
    assert calls == 3  # 7 lines, 3 a call
    assert chunked.keys() == whole.keys()
    for name in whole:
        np.testing.assert_array_equal(chunked[name], whole[name], err_msg=name)
    assert chunked["codes"].shape == (7, 8)  # padded to the longest line of all calls


def test_a_request_of_up_to_batch_size_lines_is_one_call():
    _, calls = serve(LINES[:3], lines_per_call=3)
    assert calls == 1


def test_an_empty_request_gives_empty_outputs_without_a_call():
    outputs, calls = serve([], lines_per_call=3)
    assert calls == 0
    assert outputs["echo"].shape == (0,) and outputs["length"].shape == (0,)
    assert outputs["codes"].shape == (0, 0) and outputs["pair"].shape == (0, 2)
    assert outputs["length"].dtype == np.int32 and outputs["codes"].dtype == np.int32


def test_bytes_that_are_not_utf8_become_replacement_characters_nul_and_controls_stay():
    lines = [b"ein \xff mann \xc3", b"a\x00b\x07\x1b[31m", "مرحبا שלום".encode(), "e\u0301\u0301".encode()]
    outputs, _ = serve(lines)
    assert outputs["echo"][0].decode() == "ein \ufffd mann \ufffd"
    assert outputs["echo"][1] == lines[1]
    assert outputs["echo"][2] == lines[2] and outputs["echo"][3] == lines[3]
    assert list(outputs["length"]) == [12, 9, 10, 3]


def test_lines_are_cut_to_max_input_chars_characters():
    outputs, _ = serve(["ü" * 10, "abc", "e\u0301" * 4], max_input_chars=5)
    assert [x.decode() for x in outputs["echo"]] == ["ü" * 5, "abc", "e\u0301e\u0301e"]
    assert list(outputs["length"]) == [5, 3, 5]
