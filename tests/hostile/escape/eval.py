"""Tries to write outside its folder; every attempt must fail or land in its private copy.

The test writes probe.json with absolute paths of the grader's machine to aim at.
"""
import json
import os

targets = ["../escape.txt", "/escape.txt", "/tmp/escape.txt", os.path.expanduser("~/escape.txt"),
           "own-folder.txt", *json.load(open("probe.json"))["paths"]]
for target in targets:
    try:
        with open(target, "w") as handle:
            handle.write("escaped")
    except OSError:
        pass
print(1)
