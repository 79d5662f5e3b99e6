"""Tries to reach a server on the grader's loopback (port from probe.json) and the internet."""
import json
import socket

port = json.load(open("probe.json"))["port"]
for host, port in (("127.0.0.1", port), ("1.1.1.1", 53)):
    try:
        socket.create_connection((host, port), timeout=1).close()
    except OSError:
        pass
print(1)
