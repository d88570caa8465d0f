#!/usr/bin/env python3
"""One API client holding one connection to `kleene serve` (HTTP/1.1 keep-alive over the unix
socket), timing attach (create + connect + start) and detach (stop + remove) of N vnet
containers on network NET.  Usage: api_client.py SOCKET NET N CHUNK
Prints one line per chunk of CHUNK attaches ("attach US"), then "detach US" (mean per
container, microseconds), then "request ROUTE US" (mean time of each route), then
"chunk I create US connect US start US" (each attach route's mean in chunk I: where growth is). Any answer other than the expected status stops the run."""
import http.client
import json
import socket
import sys
import time


class UnixConnection(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("kleened")
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


PHASES = {}
CHUNKS = []


def call(conn, phase, method, path, body, want):
    t = time.perf_counter_ns()
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"} if data else {}
    conn.request(method, path, body=data, headers=headers)
    answer = conn.getresponse()
    text = answer.read()
    if answer.status != want:
        sys.exit(f"{method} {path}: {answer.status} {text.decode(errors='replace')}")
    spent = time.perf_counter_ns() - t
    PHASES[phase] = PHASES.get(phase, 0) + spent
    if CHUNKS and phase in ("create", "connect", "start"):
        CHUNKS[-1][phase] = CHUNKS[-1].get(phase, 0) + spent


def main():
    sock, net, n, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    conn = UnixConnection(sock)
    names = [f"api{i}" for i in range(1, n + 1)]
    # One untimed container first: a fresh server's first requests pay one-time costs (the
    # plugin's first load, statement caches, the namespace thread's start) that would make
    # the first chunk look slow and the growth look smaller than it is.
    call(conn, "warmup", "POST", "/containers/create", {"name": "warmup", "network_driver": "vnet"}, 201)
    call(conn, "warmup", "POST", "/networks/connect", {"container": "warmup", "network": net}, 204)
    call(conn, "warmup", "POST", "/containers/warmup/start", None, 200)
    call(conn, "warmup", "POST", "/containers/warmup/stop", None, 200)
    call(conn, "warmup", "DELETE", "/containers/warmup", None, 200)
    PHASES.clear()
    for start in range(0, n, chunk):
        CHUNKS.append({})
        s = time.perf_counter_ns()
        for name in names[start:start + chunk]:
            call(conn, "create", "POST", "/containers/create", {"name": name, "network_driver": "vnet"}, 201)
            call(conn, "connect", "POST", "/networks/connect", {"container": name, "network": net}, 204)
            call(conn, "start", "POST", f"/containers/{name}/start", None, 200)
        e = time.perf_counter_ns()
        print(f"attach {(e - s) // 1000 // len(names[start:start + chunk])}", flush=True)
    s = time.perf_counter_ns()
    for name in names:
        call(conn, "stop", "POST", f"/containers/{name}/stop", None, 200)
        call(conn, "remove", "DELETE", f"/containers/{name}", None, 200)
    e = time.perf_counter_ns()
    print(f"detach {(e - s) // 1000 // n}", flush=True)
    for phase, ns in PHASES.items():
        print(f"request {phase} {ns // 1000 // n}", flush=True)
    for i, spent in enumerate(CHUNKS):
        size = len(names[i * chunk:(i + 1) * chunk])
        routes = " ".join(f"{p} {spent.get(p, 0) // 1000 // size}" for p in ("create", "connect", "start"))
        print(f"chunk {i + 1} {routes}", flush=True)


if __name__ == "__main__":
    main()
