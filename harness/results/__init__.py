"""Results: the records ``results.json`` holds, how they are written and read, cached, compared
and ranked, and what they were computed from."""
