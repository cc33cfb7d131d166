#!/usr/bin/env python3
"""A webhook receiver for scripts/bench-feed: answers 200 to every POST at once and counts
the events it received (the `"seq":` fields of each body), written to the file named by its
second argument when it is stopped (SIGTERM). Usage: webhook-receiver.py PORT COUNT_FILE"""
import http.server
import signal
import sys

port, count_file = int(sys.argv[1]), sys.argv[2]
received = {"events": 0, "posts": 0}


class Receiver(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        received["events"] += body.count(b'"seq":')
        received["posts"] += 1
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def stop(*_):
    with open(count_file, "w") as out:
        out.write(f"{received['events']} {received['posts']}\n")
    sys.exit(0)


signal.signal(signal.SIGTERM, stop)
http.server.HTTPServer(("127.0.0.1", port), Receiver).serve_forever()
