"""Reference defenses, each ``Context -> Repaired`` (see :mod:`harness.defenses.base`)."""
