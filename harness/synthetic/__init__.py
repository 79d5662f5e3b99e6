"""The embedded synthetic benchmark: procedural faces, triggers, attacks and the build recipe."""
