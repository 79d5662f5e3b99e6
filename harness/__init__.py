"""backdoor-grader: scores repaired BadNets on backdoor tracks."""

__version__ = "0.2.0"
