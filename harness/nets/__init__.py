"""Network code shared by the defenses and the synthetic benchmark: the DeepID builder and
channel pruning."""
