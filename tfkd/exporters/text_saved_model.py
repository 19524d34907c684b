"""The SavedModel every task exports: raw text in, the task's outputs out, in one graph.

Tokenization, the model and detokenization run inside the graph, so serving needs only
``tensorflow`` and ``tensorflow_text``, not tfkd, keras-hub or the user's own layer modules.
Built on ``keras.export.ExportArchive``, which tracks Keras variables so that both the TF2
loader and TF Serving's session-based loader (``saved_model_cli run``) restore them.
``assets.extra/tfkd.json`` says what the signatures read and return (``tfkd translate`` on
an export reads it).

Every signature is bounded against what a server may be sent (:func:`bounded_endpoint`): bytes
that are not UTF-8 become U+FFFD, a line is cut to its first ``max_input_chars`` characters, and
a request runs through the task's graph ``batch_size`` lines at a time, so neither one huge line
nor 10,000 lines in one request make the model's memory grow past what one call of
``batch_size`` lines of ``max_input_chars`` characters needs; an empty request answers empty
outputs.
"""

import hashlib
import json
import logging
import os
import types

import keras
import tensorflow as tf

log = logging.getLogger("tfkd")

INFO_FILE = os.path.join("assets.extra", "tfkd.json")


# export.max_input_chars's default
MAX_INPUT_CHARS = 65536


def write_text_saved_model(
    path,
    endpoints,
    info,
    tokenizers=(),
    resources=(),
    max_input_chars=MAX_INPUT_CHARS,
    endpoint_inputs=None,
    warmup_lines=(),
):
    """Write a SavedModel to the new folder ``path`` (the exporter renames it into place).

    Args:
        path: the folder to write.
        endpoints: ``{signature name: function}``, each function of one ``tf.string [None]``
            batch returning a dict of tensors; ``serving_default`` among them.
        info: what ``assets.extra/tfkd.json`` holds: ``task``, ``input`` (the name of every
            signature's input), ``output`` (the output that carries the text), ``batch_size``
            (lines per call), and whatever else the task adds.
        tokenizers: the in-graph tokenizers (their SentencePiece models: :func:`track_tokenizers`).
        resources: other TensorFlow resources the graph reads that Keras does not track (a
            tokenizer's lookup tables kept as plain attributes, a sampler's seed state).
        max_input_chars: the longest line a signature reads (the spec's
            ``export.max_input_chars``); ``info["batch_size"]`` lines go through the graph at a
            time (:func:`bounded_endpoint`).
        endpoint_inputs: ``{signature name: (input name, ...)}`` for a signature that reads
            several aligned ``tf.string [None]`` batches (a source and a target to score, say);
            the others read one, ``info["input"]``.
        warmup_lines: lines TF Serving sends ``serving_default`` one request each as the model
            loads (:func:`write_warmup_requests`), before it serves.
    """
    info = {**info, "max_input_chars": max_input_chars}
    archive = keras.export.ExportArchive()
    track_tokenizers(archive, *tokenizers)
    for resource in resources:
        archive.track(resource)
    # the endpoints' variables are tracked from the traced graph; archive.track(model) would
    # also store the model's Keras variables, a second copy of every weight
    for name, function in endpoints.items():
        inputs = (endpoint_inputs or {}).get(name, (info["input"],))
        bounded = bounded_endpoint(function, info["batch_size"], max_input_chars, len(inputs))
        archive.add_endpoint(name, bounded, input_signature=[tf.TensorSpec([None], tf.string, name=n) for n in inputs])
    archive.write_out(path, verbose=False)
    os.makedirs(os.path.join(path, "assets.extra"), exist_ok=True)
    with open(os.path.join(path, INFO_FILE), "w") as f:
        json.dump(info, f)
    with open(os.path.join(path, BATCHING_FILE), "w") as f:
        f.write(BATCHING_PARAMETERS.format(lines=info["batch_size"]))
    if warmup_lines:
        write_warmup_requests(path, warmup_lines, info["input"])


# TF Serving's model warm-up (on by default, --enable_model_warmup): the server runs the
# requests of this file, a TFRecord of PredictionLog, as it loads the version, before serving
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


def write_warmup_requests(path, lines, input_name):
    """``WARMUP_FILE`` of the SavedModel at ``path``: one ``serving_default`` Predict request of
    each line. Needs ``tensorflow-serving-api`` (``pip install tfkd[serving]``); without it the
    export is written without the file and a warning says so."""
    try:
        from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2
    except ImportError:
        log.warning(
            "export: no TF Serving warm-up requests written (pip install tfkd[serving]): "
            "the server compiles each XLA program at the first request that needs it"
        )
        return
    with tf.io.TFRecordWriter(os.path.join(path, WARMUP_FILE)) as writer:
        for line in lines:
            request = predict_pb2.PredictRequest(model_spec=model_pb2.ModelSpec(signature_name="serving_default"))
            request.inputs[input_name].CopyFrom(tf.make_tensor_proto([line], dtype=tf.string))
            warmup = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(warmup.SerializeToString())


# TF Serving's server-side batching for this export (tensorflow_model_server --enable_batching
# --batching_parameters_file=VERSION/assets.extra/batching_parameters.txt): requests that arrive
# together are joined into calls of up to batch_size lines, the size the graph runs at a time
BATCHING_FILE = os.path.join("assets.extra", "batching_parameters.txt")
BATCHING_PARAMETERS = """\
# TF Serving batching parameters for this export (docs/serving.md, "Server-side batching")
# lines per call: the export's batch_size (a larger request still runs batch_size lines at a time)
max_batch_size {{ value: {lines} }}
# how long a call waits for more requests to join it
batch_timeout_micros {{ value: 5000 }}
# calls waiting beyond this are refused (UNAVAILABLE) instead of queued without bound
max_enqueued_batches {{ value: 64 }}
# calls run at once: set it to the server's cores
num_batch_threads {{ value: 2 }}
"""


def bounded_endpoint(function, lines_per_call, max_input_chars, inputs=1):
    """``function`` (strings ``[B]``, ``inputs`` aligned batches of them, -> a dict of tensors
    with ``B`` rows) as a server can be
    allowed to call it with anything: each line is made valid UTF-8 (U+FFFD for bytes that are
    not) and cut to its first ``max_input_chars`` characters, and the request is cut into
    consecutive calls of ``lines_per_call`` lines whose outputs are concatenated (outputs with
    more axes, such as a language model's per-token log-probabilities, are padded with zeros or
    empty strings to the widest call's, as one call pads them to its longest line). A request
    of up to ``lines_per_call`` lines is one call, as before; an empty request gives outputs of
    0 rows without calling ``function``."""
    # the outputs' dtypes and shapes, from a trace in a graph of its own (not saved)
    structure = (
        tf.function(function, autograph=False)
        .get_concrete_function(*[tf.TensorSpec([None], tf.string)] * inputs)
        .structured_outputs
    )

    def valid(lines):
        lines = tf.strings.unicode_transcode(lines, "UTF-8", "UTF-8", errors="replace", replacement_char=0xFFFD)
        return tf.strings.substr(lines, 0, max_input_chars, unit="UTF8_CHAR")

    def serve(*batches):
        texts = batches[0]
        if inputs > 1:  # aligned batches: one line of each per row
            rows = tf.shape(texts)[0]
            checks = [
                tf.debugging.assert_equal(tf.shape(b)[0], rows, message="the inputs must have as many lines each")
                for b in batches[1:]
            ]
            with tf.control_dependencies(checks):
                texts = tf.identity(texts)

        def call(start, outputs):
            more = function(*(valid(b[start : start + lines_per_call]) for b in batches))
            return start + lines_per_call, {k: _concatenate_rows(outputs[k], more[k]) for k in outputs}

        empty = {k: tf.zeros([0] + [d or 0 for d in v.shape[1:]], v.dtype) for k, v in structure.items()}
        invariants = {k: tf.TensorShape([None] * v.shape.rank) for k, v in structure.items()}
        _, outputs = tf.while_loop(
            lambda start, _: start < tf.shape(texts)[0],
            call,
            (tf.constant(0), empty),
            shape_invariants=(tf.TensorShape([]), invariants),
            parallel_iterations=1,
        )
        return outputs

    return serve


def _concatenate_rows(a, b):
    """``a`` then ``b`` along the first axis, the other axes padded to the wider of the two."""
    if a.shape.rank == 1:
        return tf.concat([a, b], axis=0)
    widths = tf.maximum(tf.shape(a)[1:], tf.shape(b)[1:])

    def pad(x):
        extra = widths - tf.shape(x)[1:]
        paddings = tf.stack([tf.concat([[0], tf.zeros_like(extra)], 0), tf.concat([[0], extra], 0)], axis=1)
        return tf.pad(x, paddings, constant_values="" if x.dtype == tf.string else tf.zeros([], x.dtype))

    return tf.concat([pad(a), pad(b)], axis=0)


def track_tokenizers(archive, *tokenizers):
    """Track the TensorFlow resources of in-graph tokenizers (a SentencePiece model: a resource
    Keras does not track) in a ``keras.export.ExportArchive``, so the endpoints that capture
    them can be saved; WordPiece tokenizers hold none.

    tensorflow-text creates a loaded SentencePiece model under one default name, so the second
    model of a SavedModel (a translation's target side) would load as the first; each is
    named by its content here instead."""
    for tokenizer in tokenizers:
        sentencepiece = getattr(tokenizer, "_sentence_piece", None)  # keras-hub's tensorflow-text tokenizer
        if sentencepiece is not None:
            resource = sentencepiece._model_resource
            resource._create_resource = types.MethodType(_named_sentencepiece_resource, resource)
            archive.track(sentencepiece)


def _named_sentencepiece_resource(resource):
    from tensorflow_text.python.ops.sentencepiece_tokenizer import gen_sentencepiece_tokenizer

    model = resource._model
    model = model if isinstance(model, bytes) else model.numpy()
    return gen_sentencepiece_tokenizer.sentencepiece_op(
        model=model, shared_name=f"tfkd_sentencepiece_{hashlib.sha256(model).hexdigest()[:16]}"
    )
