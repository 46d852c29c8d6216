"""The one error type that the command-line tools turn into a one-line message and exit status 2."""

from __future__ import annotations


class InputError(ValueError):
    """Bad input from the user: a file, folder, dataset or argument that the pipeline cannot use.

    The message names the file (or dataset, or argument) and what is wrong with it, in one line, so that the
    command-line tools can print it as it is. Library code raises it; only ``segformer3d_auto.cli`` catches it.
    """
