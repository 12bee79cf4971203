#!/usr/bin/env python3
"""The demo's webhook receiver: verifies every delivery with the official Standard Webhooks
library (an implementation independent of ours) and appends one JSON line per event to a file.

    demo_receiver.py PORT_FILE EVENTS_FILE

It listens on a free 127.0.0.1 port and writes that port to PORT_FILE. The signing secret is read
from EVENTS_FILE + ".secret" on each request, because the endpoint (and its secret) is created
after the receiver starts. A delivery whose signature does not verify is answered 401 and logged
with "verified": false, so the demo shows it.
"""

import json
import pathlib
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

PORT_FILE = pathlib.Path(sys.argv[1])
EVENTS_FILE = pathlib.Path(sys.argv[2])
SECRET_FILE = EVENTS_FILE.with_name(EVENTS_FILE.name + ".secret")


class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (the stdlib's name)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {name.lower(): value for name, value in self.headers.items()}
        verified = False
        try:
            secret = SECRET_FILE.read_text().strip()
            event = Webhook(secret).verify(body, headers)
            verified = True
        except (OSError, WebhookVerificationError, ValueError):
            event = json.loads(body or b"{}")
        line = {
            "verified": verified,
            "webhook_id": headers.get("webhook-id"),
            "type": event.get("type"),
            "connection_id": event.get("connection_id"),
            "sequence": event.get("sequence"),
            "data": event.get("data"),
        }
        with EVENTS_FILE.open("a") as out:
            out.write(json.dumps(line) + "\n")
        self.send_response(204 if verified else 401)
        self.end_headers()

    def log_message(self, *_args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
PORT_FILE.write_text(str(server.server_address[1]))
server.serve_forever()
