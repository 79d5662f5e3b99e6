"""What every shadowing module runs if it is ever imported: it tries to leave a mark outside
the sandbox and stops the worker, so the entry could not be graded like the BadNet it holds."""
import json
import os

for target in json.load(open(os.path.join(os.path.dirname(__file__), "probe.json")))["paths"]:
    try:
        with open(target, "w") as handle:
            handle.write("a module of the submission ran")
    except OSError:
        pass
raise SystemExit(3)