"""Score: hand the hidden test images over, grade one submission on one track, turn answers
into metrics with their intervals, and run items locally or on Ray."""
