"""tfkd's errors: each message is the one line the command prints. No heavy imports."""


class SpecError(ValueError):
    """A spec problem; ``str()`` is the one-line message the CLI prints."""
