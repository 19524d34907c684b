"""Text files read line by line, with errors that name the file and the line. Imports neither
TensorFlow nor NumPy, so light commands (``tfkd compare``) read files as the data pipeline
does."""

import os

from tfkd.errors import DataError


def read_raw_lines(path):
    """The lines of ``path`` as bytes (no trailing empty line); a missing file is a
    :class:`DataError`."""
    if not os.path.exists(path):
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as f:
        return split_lines(f.read())


def split_lines(data):
    """``data`` (bytes) as its lines, without their newlines or a trailing empty line."""
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return lines


def decode_line(line, path, number):
    """``line`` (bytes, line ``number`` of ``path``) as text; invalid UTF-8 is a :class:`DataError`."""
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"{path}:{number}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
