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

This module does not import Keras or TensorFlow: built-in entries are *declared* by module
path and imported on first use, so ``tfkd validate`` and ``tfkd --help`` start in a fraction
of a second.
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
    "adapter": ("keras.layers:Layer", "call(inputs, training=None) -> same shape (after a pretrained layer); a "
                "decoder-side adapter also takes (encoder_sequence, encoder_padding_mask, decoder_padding_mask)"),
    "decoder": (None, "decode(model, source_ids, special_ids, max_length, **options) -> (ids, scores)"),
    "exporter": ("tfkd.exporters.base:Exporter", "export(context, student, directory, version) -> the path it wrote"),
}

_REGISTRY = {kind: {} for kind in KINDS}
# packages whose import declares the built-in entries (they only declare, importing nothing heavy)
_BUILTIN_PACKAGES = ("tfkd.builtins", "tfkd.tasks", "tfkd.methods", "tfkd.exporters")
_builtins_loaded = False


class Declared:
    """A built-in entry known by module path; imported on first :func:`lookup`.

    ``schema`` (a pydantic model class, importable without TensorFlow) validates the entry's
    spec settings; ``arguments`` lists a layer constructor's keyword arguments so a spec can be
    checked without importing the layer (a test compares it with the real signature).
    """

    def __init__(self, target, schema=None, arguments=None, required=()):
        self.target = target
        self.schema = schema
        self.arguments = tuple(arguments) if arguments is not None else None
        self.required = tuple(required)

    def load(self):
        return _import(self.target)


def _import(target):
    module, _, attribute = target.partition(":")
    value = importlib.import_module(module)
    for part in attribute.split("."):
        value = getattr(value, part)
    return value


def _load_builtins():
    global _builtins_loaded
    if not _builtins_loaded:
        _builtins_loaded = True
        for package in _BUILTIN_PACKAGES:
            importlib.import_module(package)


def did_you_mean(name, choices):
    """Return ' did you mean "x"?' for the closest choice, or ''."""
    close = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f' did you mean "{close[0]}"?' if close else ""


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(
            f'tfkd.register: unknown kind "{kind}";{did_you_mean(kind, KINDS)} '
            f"Choices: {', '.join(sorted(KINDS))}"
        )


def _store(kind, name, entry, origin):
    existing = _REGISTRY[kind].get(name)
    if existing is not None and existing is not entry:
        previous = _origin(existing)
        if previous != origin and not isinstance(existing, Declared):
            raise ValueError(
                f'tfkd.register: {kind} "{name}" is already registered by {previous}; pick another name.'
            )
    _REGISTRY[kind][name] = entry


def _origin(entry):
    if isinstance(entry, Declared):
        return entry.target
    cls = entry if inspect.isclass(entry) else type(entry)
    return f"{cls.__module__}.{cls.__qualname__}"


def declare(kind, name, target, schema=None, arguments=None, required=()):
    """Declare a built-in entry by ``"module:attribute"`` without importing it."""
    _check_kind(kind)
    _REGISTRY[kind].setdefault(name, Declared(target, schema, arguments, required))


def register(kind, name):
    """Decorator: register ``obj`` (a class, or a method/task instance) as ``name`` among ``kind``.

    Keras layers and models also become Keras-serialisable. Returns ``obj`` unchanged.
    """
    _check_kind(kind)

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
    return sorted(_REGISTRY[kind])


def origin(kind, name):
    """Where ``name`` comes from: ``module.Class`` (or ``module:attribute`` not imported yet)."""
    return _origin(_entry(kind, name))


def _entry(kind, name):
    _load_builtins()
    try:
        return _REGISTRY[kind][name]
    except KeyError:
        choices = names(kind)
        raise ValueError(
            f'unknown {kind.replace("_", " ")} "{name}";{did_you_mean(name, choices)} '
            f"Choices: {', '.join(choices)}"
        ) from None


def check_name(kind, name):
    """``name`` if it is registered among ``kind`` (without importing a declared entry);
    ValueError listing the choices otherwise."""
    _entry(kind, name)
    return name


def lookup(kind, name):
    """What is registered as ``name`` (imported now if it was declared); ValueError listing the
    choices otherwise."""
    entry = _entry(kind, name)
    if isinstance(entry, Declared):
        loaded = entry.load()
        if _REGISTRY[kind].get(name) is entry:  # importing may have registered it already
            _REGISTRY[kind][name] = loaded
        return _REGISTRY[kind][name]
    return entry


def schema(kind, name):
    """The pydantic schema of an entry's spec settings, without importing a declared entry."""
    entry = _entry(kind, name)
    if isinstance(entry, Declared):
        return entry.schema
    return getattr(entry, "config_schema", None) or getattr(entry, "spec_schema", None)


def constructor_arguments(kind, name):
    """``(argument names, required names, accepts **kwargs)`` of an entry's constructor."""
    entry = _entry(kind, name)
    if isinstance(entry, Declared) and entry.arguments is not None:
        return entry.arguments, entry.required, True
    cls = lookup(kind, name)
    params = inspect.signature(cls.__init__).parameters
    named = tuple(n for n, p in params.items() if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL))
    required = tuple(
        n for n in named
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
    entry = _entry(kind, name)
    label = name if isinstance(entry, Declared) else getattr(entry, "__name__", name)
    for key in kwargs:
        if key not in named and not (accepts_any and key in _KERAS_LAYER_KWARGS):
            raise ValueError(
                f'unknown argument "{key}" for {label};{did_you_mean(key, named)} Valid: {", ".join(named)}'
            )
    missing = [n for n in required if n not in kwargs and n not in supplied]
    if missing:
        raise ValueError(f"{label} needs argument(s): {', '.join(missing)}")


_KERAS_LAYER_KWARGS = {"name", "dtype", "trainable"}
