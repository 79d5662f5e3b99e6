"""Matplotlib for every picture the grader draws (the plots, the montages), set up in one place.
"""

from __future__ import annotations


def pyplot():
    """pyplot on the Agg backend: no display is needed and Agg renders the same bytes each time.

    Text is never parsed as mathtext: labels carry submission names, and a name like
    ``math$x^^y$`` would otherwise be a formula (which can fail to parse and end the run). Every
    picture of the grader is drawn through here, so this is the one switch.
    """
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["text.parse_math"] = False
    import matplotlib.pyplot as plt

    return plt
