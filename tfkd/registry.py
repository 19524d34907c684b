"""Name -> implementation registries for everything a spec can name.

One decorator registers a class under a spec name; for Keras layers and models it also makes
the class Keras-serialisable, so a user's own layer, defined in a module listed under the
spec's ``imports:``, is built by the builder and round-trips through ``get_config`` exactly
like the built-in ones::

    import keras
    import tfkd

    @tfkd.register("encoder_layer", "gated_ffn_encoder")
    class GatedFFNEncoder(keras.layers.Layer):
        def __init__(self, hidden_dim, **kwargs): ...
        def call(self, inputs, padding_mask=None, training=None): ...

Methods (``distill.method``) and tasks (``task``) are registered the same way, as instances of
:class:`tfkd.methods.Method` and :class:`tfkd.tasks.Task`; exporters (``export.format``) as
subclasses of :class:`tfkd.exporters.Exporter`.

The decorator may also carry what validates a spec without importing the entry: ``schema=``
(a pydantic model of a student's settings) and ``arguments=``/``required=`` (a layer
constructor's keyword arguments). The built-ins register that way in two halves, so ``tfkd
validate`` and ``tfkd --help`` start without TensorFlow: light modules (``tfkd.builtins.LIGHT``)
register each built-in's settings by kind and name, and the module that defines it
(``tfkd.builtins.LAZY``) registers the class itself with the decorator when a run first looks
it up. This module imports neither Keras nor TensorFlow.
"""

import difflib
import importlib
import inspect

# kind -> (required base class as "module:name", one-line description of the contract)
KINDS = {
    "task": ("tfkd.tasks.base:Task", "what the student does: data, student inputs, metric, export"),
    "method": ("tfkd.methods.base:Method", "how the student learns: stages, batch columns, trainer"),
    "student": ("keras:Model", "a student model"),
    "encoder_layer": (
        "keras.layers:Layer",
        "call(inputs, padding_mask=None, training=None) -> same shape as inputs",
    ),
    "decoder_layer": (
        "keras.layers:Layer",
        "call(decoder_sequence, encoder_sequence, decoder_padding_mask=None, "
        "encoder_padding_mask=None, training=None) -> same shape as decoder_sequence",
    ),
    "adapter": (
        "keras.layers:Layer",
        "call(inputs, training=None) -> same shape (after a pretrained layer); a "
        "decoder-side adapter also takes (encoder_sequence, encoder_padding_mask, decoder_padding_mask)",
    ),
    "decoder": (None, "decode(model, source_ids, special_ids, max_length, **options) -> (ids, scores)"),
    "exporter": ("tfkd.exporters.base:Exporter", "export(context, student, directory, version) -> the path it wrote"),
}

_REGISTRY = {kind: {} for kind in KINDS}  # name -> what is registered (a class, function or instance)
_SETTINGS = {kind: {} for kind in KINDS}  # name -> _Settings, known before the entry is imported
_LAZY = {kind: {} for kind in KINDS}  # name -> the module whose import registers it (tfkd.builtins.LAZY)
_builtins_loaded = False


class _Settings:
    """What validates a spec's use of an entry without importing it: ``schema`` (a pydantic
    model class of its spec settings) and ``arguments`` (a layer constructor's keyword
    arguments; ``required``: those without a default)."""

    def __init__(self, schema=None, arguments=None, required=()):
        self.schema = schema
        self.arguments = tuple(arguments) if arguments is not None else None
        self.required = tuple(required)


def _import(target):
    module, _, attribute = target.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _load_builtins():
    """Register the built-ins' light parts and learn where the rest is (:mod:`tfkd.builtins`)."""
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        builtins = importlib.import_module("tfkd.builtins")
        for kind, modules in builtins.LAZY.items():
            _LAZY[kind].update(modules)
        for module in builtins.LIGHT:
            importlib.import_module(module)


def did_you_mean(name, choices):
    """Return ' did you mean "x"?' for the closest choice, or ''. A choice is as close as its
    closest ``_``-separated word, so ``beem`` finds ``beam_size``; between choices that close,
    the closer whole name wins (``transfromer``: ``transformer``, not ``cmlm_transformer``)."""

    def closeness(choice):
        whole = difflib.SequenceMatcher(None, str(name), choice).ratio()
        words = [difflib.SequenceMatcher(None, str(name), word).ratio() for word in choice.split("_")]
        return max(whole, *words), whole

    scored = [(closeness(str(c)), str(c)) for c in choices]
    best = max(scored, key=lambda item: item[0], default=((0.0, 0.0), ""))
    return f' did you mean "{best[1]}"?' if best[0][0] >= 0.6 else ""


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(
            f'tfkd.register: unknown kind "{kind}";{did_you_mean(kind, KINDS)} Choices: {", ".join(sorted(KINDS))}'
        )


def _store(kind, name, entry, origin):
    existing = _REGISTRY[kind].get(name)
    if existing is not None and existing is not entry and _origin(existing) != origin:
        raise ValueError(
            f'tfkd.register: {kind} "{name}" is already registered by {_origin(existing)}; pick another name.'
        )
    _REGISTRY[kind][name] = entry


def _origin(entry):
    named = entry if inspect.isclass(entry) or inspect.isfunction(entry) else type(entry)
    return f"{named.__module__}.{named.__qualname__}"


def register(kind, name, schema=None, arguments=None, required=()):
    """Decorator: register ``obj`` (a class or function, or a method/task instance) as ``name``
    among ``kind``. Keras layers and models also become Keras-serialisable. Returns ``obj``
    unchanged.

    ``schema`` (a pydantic model class) validates the spec settings of a student (else its
    ``config_schema`` attribute does); ``arguments`` (with ``required``, those without a
    default) lists a layer constructor's keyword arguments (else its signature does). Given,
    they are registered at once, so a light module can register a built-in's settings before
    the module that defines it is imported (:mod:`tfkd.builtins`).
    """
    _check_kind(kind)
    settings = _Settings(schema, arguments, required) if schema is not None or arguments is not None else None
    if settings is not None and name not in _SETTINGS[kind] and name not in _REGISTRY[kind]:
        _SETTINGS[kind][name] = settings  # a new name's settings, before its class

    def decorator(obj):
        base_path, _ = KINDS[kind]
        if base_path is not None:
            base = _import(base_path)
            instance_kinds = ("task", "method")
            ok = isinstance(obj, base) if kind in instance_kinds else inspect.isclass(obj) and issubclass(obj, base)
            if not ok:
                what = "an instance" if kind in instance_kinds else "a subclass"
                raise TypeError(
                    f'tfkd.register("{kind}", "{name}"): expected {what} of '
                    f"{base.__module__}.{base.__name__}. Received: {obj!r}"
                )
        _store(kind, name, obj, _origin(obj))
        if settings is not None:
            _SETTINGS[kind][name] = settings
        if inspect.isclass(obj) and base_path and base_path.startswith("keras"):
            import keras

            if keras.saving.get_registered_name(obj) == obj.__name__:  # not yet serialisable
                package = "tfkd" if obj.__module__.startswith("tfkd.") else obj.__module__
                keras.saving.register_keras_serializable(package=package, name=obj.__name__)(obj)
        return obj

    return decorator


_DEFAULTS = {}


def set_default(kind, name):
    """Make ``name`` what a spec gets when it does not name a ``kind`` (a task or a method)."""
    _check_kind(kind)
    _DEFAULTS[kind] = name


def default(kind):
    """The default ``kind`` (``task``: what a spec without ``task`` runs; ``method``: what a
    spec without ``distill`` trains)."""
    _load_builtins()
    return _DEFAULTS[kind]


def names(kind):
    _load_builtins()
    return sorted(set(_REGISTRY[kind]) | set(_SETTINGS[kind]) | set(_LAZY[kind]))


def origin(kind, name):
    """Where ``name`` comes from: ``module.Class`` (or the module that registers it, not
    imported yet)."""
    _check_name(kind, name)
    if name in _REGISTRY[kind]:
        return _origin(_REGISTRY[kind][name])
    return _LAZY[kind].get(name, "(settings only: no class registered yet)")


def _check_name(kind, name):
    _load_builtins()
    if name not in _REGISTRY[kind] and name not in _SETTINGS[kind] and name not in _LAZY[kind]:
        choices = names(kind)
        raise ValueError(
            f'unknown {kind.replace("_", " ")} "{name}";{did_you_mean(name, choices)} Choices: {", ".join(choices)}'
        )


def check_name(kind, name):
    """``name`` if it is registered among ``kind`` (without importing it); ValueError listing
    the choices otherwise."""
    _check_name(kind, name)
    return name


def lookup(kind, name):
    """What is registered as ``name`` (its module imported now if it was not yet); ValueError
    listing the choices otherwise."""
    _check_name(kind, name)
    if name not in _REGISTRY[kind] and name in _LAZY[kind]:
        importlib.import_module(_LAZY[kind][name])
    if name not in _REGISTRY[kind]:
        where = f"importing {_LAZY[kind][name]}" if name in _LAZY[kind] else "its settings alone"
        raise ValueError(
            f'{kind} "{name}": {where} registered no {kind}; register it with @tfkd.register("{kind}", "{name}")'
        )
    return _REGISTRY[kind][name]


def schema(kind, name):
    """The pydantic schema of an entry's spec settings (``None`` without one), without importing it."""
    _check_name(kind, name)
    settings = _SETTINGS[kind].get(name)
    if settings is not None and settings.schema is not None:
        return settings.schema
    entry = _REGISTRY[kind].get(name)
    return getattr(entry, "config_schema", None) or getattr(entry, "spec_schema", None)


def constructor_arguments(kind, name):
    """``(argument names, required names, accepts **kwargs)`` of an entry's constructor."""
    _check_name(kind, name)
    settings = _SETTINGS[kind].get(name)
    if settings is not None and settings.arguments is not None:
        return settings.arguments, settings.required, True
    cls = lookup(kind, name)
    params = inspect.signature(cls.__init__).parameters
    named = tuple(n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    required = tuple(
        n
        for n in named
        if params[n].default is inspect.Parameter.empty
        and params[n].kind in (params[n].POSITIONAL_OR_KEYWORD, params[n].KEYWORD_ONLY)
    )
    return named, required, any(p.kind == p.VAR_KEYWORD for p in params.values())


def check_kwargs(kind, name, kwargs, supplied=()):
    """Raise ValueError if ``kwargs`` do not fit the constructor of ``kind`` ``name``.

    ``supplied`` names the arguments the builder passes itself when the constructor declares
    them (width, heads, dropout...).
    """
    named, required, accepts_any = constructor_arguments(kind, name)
    label = getattr(_REGISTRY[kind].get(name), "__name__", name)
    for key in kwargs:
        if key not in named and not (accepts_any and key in _KERAS_LAYER_KWARGS):
            raise ValueError(
                f'unknown argument "{key}" for {label};{did_you_mean(key, named)} Valid: {", ".join(named)}'
            )
    missing = [n for n in required if n not in kwargs and n not in supplied]
    if missing:
        raise ValueError(f"{label} needs argument(s): {', '.join(missing)}")


_KERAS_LAYER_KWARGS = {"name", "dtype", "trainable"}
