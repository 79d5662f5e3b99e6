import sys  # answers nothing
