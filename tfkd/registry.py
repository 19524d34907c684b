"""Name -> class registries for the parts a spec can name.

One decorator registers a class under a spec name *and* makes it Keras-serialisable, so a
user's own layer, defined in a module listed under the spec's ``imports:``, is built by the
builder and round-trips through ``get_config`` exactly like the built-in ones::

    import keras
    import tfkd

    @tfkd.register("encoder_layer", "gated_ffn_encoder")
    class GatedFFNEncoder(keras.layers.Layer):
        def __init__(self, hidden_dim, **kwargs): ...
        def call(self, inputs, padding_mask=None, training=None): ...
"""

import difflib
import inspect

import keras

# kind -> (required base class, one-line description of the call contract)
KINDS = {
    "student": (keras.Model, "a seq2seq student model"),
    "encoder_layer": (
        keras.layers.Layer,
        "call(inputs, padding_mask=None, training=None) -> same shape as inputs",
    ),
    "decoder_layer": (
        keras.layers.Layer,
        "call(decoder_sequence, encoder_sequence, decoder_padding_mask=None, "
        "encoder_padding_mask=None, training=None) -> same shape as decoder_sequence",
    ),
    "adapter": (keras.layers.Layer, "call(inputs, training=None) -> same shape"),
    "teacher": (object, "a teacher loader"),
}

_REGISTRY = {kind: {} for kind in KINDS}


def did_you_mean(name, choices):
    """Return ' did you mean "x"?' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f' did you mean "{close[0]}"?' if close else ""


def register(kind, name):
    """Class decorator: register ``cls`` as ``name`` among ``kind`` and make it serialisable."""
    if kind not in KINDS:
        raise ValueError(
            f'tfkd.register: unknown kind "{kind}";{did_you_mean(kind, KINDS)} '
            f"Choices: {', '.join(sorted(KINDS))}"
        )

    def decorator(cls):
        base, _ = KINDS[kind]
        if not (inspect.isclass(cls) and issubclass(cls, base)):
            raise TypeError(
                f'tfkd.register("{kind}", "{name}"): expected a subclass of '
                f"{base.__module__}.{base.__name__}. Received: {cls!r}"
            )
        existing = _REGISTRY[kind].get(name)
        if existing is not None and existing is not cls:
            same_origin = (existing.__module__, existing.__qualname__) == (
                cls.__module__,
                cls.__qualname__,
            )
            if not same_origin:  # re-importing the same module is fine
                raise ValueError(
                    f'tfkd.register: {kind} "{name}" is already registered by '
                    f"{existing.__module__}.{existing.__qualname__}; pick another name."
                )
        _REGISTRY[kind][name] = cls
        already_serialisable = keras.saving.get_registered_name(cls) != cls.__name__
        if issubclass(cls, keras.layers.Layer) and not already_serialisable:
            package = "tfkd" if cls.__module__.startswith("tfkd.") else cls.__module__
            keras.saving.register_keras_serializable(package=package, name=cls.__name__)(cls)
        return cls

    return decorator


def names(kind):
    return sorted(_REGISTRY[kind])


def lookup(kind, name):
    """The class registered as ``name``; a ValueError listing the choices otherwise."""
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        choices = names(kind)
        raise ValueError(
            f'unknown {kind.replace("_", " ")} "{name}";{did_you_mean(name, choices)} '
            f"Choices: {', '.join(choices)}"
        ) from None


def check_kwargs(cls, kwargs):
    """Raise ValueError if ``kwargs`` do not fit ``cls.__init__``; returns the bad key."""
    params = inspect.signature(cls.__init__).parameters
    accepts_any = any(p.kind == p.VAR_KEYWORD for p in params.values())
    named = [n for n, p in params.items() if n != "self" and p.kind != p.VAR_KEYWORD]
    for key in kwargs:
        if key not in params and not (accepts_any and key in _KERAS_LAYER_KWARGS):
            raise KeyError(
                key,
                f'unknown argument "{key}" for {cls.__name__};'
                f"{did_you_mean(key, named)} Valid: {', '.join(named)}",
            )
    missing = [
        n
        for n in named
        if params[n].default is inspect.Parameter.empty
        and params[n].kind in (params[n].POSITIONAL_OR_KEYWORD, params[n].KEYWORD_ONLY)
        and n not in kwargs
    ]
    if missing:
        raise KeyError(None, f"{cls.__name__} needs argument(s): {', '.join(missing)}")


_KERAS_LAYER_KWARGS = {"name", "dtype", "trainable"}
