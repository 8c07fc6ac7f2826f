"""Verify an orderwatch webhook with the official `standardwebhooks` package,
exactly as README.md shows. Usage: verify.py SECRET CAPTURE.json
CAPTURE.json holds {"headers": {...}, "body": "..."} of one received request."""
import json
import sys

from standardwebhooks.webhooks import Webhook

secret, capture = sys.argv[1], sys.argv[2]
with open(capture) as f:
    request = json.load(f)

wh = Webhook(secret)
event = wh.verify(request["body"], request["headers"])  # raises if forged or stale
print(event["type"], event["data"]["id"])
