"""The one line between a user's mistake and a bug in tinype.

A UserError is something the user asked for or gave that tinype cannot use: a flag out of range, a
file that is not text, a folder that cannot be written, a checkpoint from another configuration.
The `tinype` command prints its message in one line, without a traceback, and exits with 1.
Every other exception is a bug in tinype (or in a user's own encoding) and keeps its traceback.

The subclasses also derive from the built-in exception a caller would expect (ValueError,
FileNotFoundError, ...), so `except ValueError` keeps working around tinype's functions.
"""


class UserError(Exception):
    """A problem with the user's input; its message says what is wrong and what to do instead."""


class InvalidValue(UserError, ValueError):
    """A value (a flag, an option, a configuration field) that tinype cannot use."""


class InvalidFile(UserError, ValueError):
    """A file that exists but cannot be used: not text, not JSON, a FIFO, unreadable."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class FolderInUse(UserError, FileExistsError):
    """A run folder already holds a run that this command would overwrite."""


class UnwritableFolder(UserError, OSError):
    """An output folder that cannot be created or written (under a file, no permission, '')."""


def ensure_writable_folder(path, flag="--out"):
    """Create `path` (and its parents) or raise UnwritableFolder saying why, before any work starts."""
    import os
    import tempfile
    if not isinstance(path, str) or not path.strip():
        raise UnwritableFolder(f"{flag} is empty: name a folder to write into, e.g. {flag} runs/my_run")
    if os.path.exists(path) and not os.path.isdir(path):
        raise UnwritableFolder(f"{flag} {path} is a file, not a folder: choose another {flag}")
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):       # a folder root may create but not write into
            pass
    except NotADirectoryError:
        raise UnwritableFolder(f"{flag} {path} lies under a file, not a folder: choose another {flag}") from None
    except OSError as err:
        raise UnwritableFolder(f"{flag} {path} cannot be written ({err.strerror or err}): "
                               f"choose another {flag}") from None
