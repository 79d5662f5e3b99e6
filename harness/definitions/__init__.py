"""Discover: what is graded and against what (tracks, submissions, the contest's data files)."""
