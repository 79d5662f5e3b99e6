"""TensorFlow's start-up lines kept off the terminal.

Importing TensorFlow prints absl's "All log messages before absl::InitializeLog()", oneDNN's and
the CUDA probe's lines on stderr. A sandboxed worker's stderr is its log (the grader shows a user
its own lines only); the commands that run TensorFlow in their own process (``benchmark build``,
``reference build``, ``bench``) import it through :func:`import_tensorflow`.
"""

from __future__ import annotations

import os
import sys

TF_ENVIRONMENT = {"TF_CPP_MIN_LOG_LEVEL": "2"}
"""TensorFlow's own log level, in a worker's environment and in a command's: errors only."""


def import_tensorflow() -> None:
    """Import TensorFlow and probe its devices with stderr pointed at /dev/null: those lines come
    from C++ before the log level is read, so only the descriptor keeps them away. Later lines
    obey :data:`TF_ENVIRONMENT`; a failing import still raises (and its traceback shows)."""
    for key, value in TF_ENVIRONMENT.items():
        os.environ.setdefault(key, value)
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")  # the CUDA probe, which logs at its first use
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)
