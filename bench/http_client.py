#!/usr/bin/env python3
"""Sends N HTTP/1.1 requests one after the other on one keep-alive connection and checks each
answer is 200 (bench/callgrind's load: a fixed number of requests, not a duration)."""
import argparse
import socket
import sys


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--path", default="/health/live")
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--header", action="append", default=[])
    args = ap.parse_args()
    extra = "".join(h + "\r\n" for h in args.header)
    request = f"GET {args.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}\r\n".encode()
    sock = socket.create_connection(("127.0.0.1", args.port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    buf = b""
    for i in range(args.requests):
        sock.sendall(request)
        while b"\r\n\r\n" not in buf:
            chunk = sock.recv(65536)
            if not chunk:
                print(f"connection closed after {i} responses", file=sys.stderr)
                return 1
            buf += chunk
        head, _, buf = buf.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        while len(buf) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return 1
            buf += chunk
        buf = buf[length:]
        if status != 200:
            print(f"request {i}: status {status}", file=sys.stderr)
            return 1
    sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
