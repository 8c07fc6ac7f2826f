// Verify an orderwatch webhook with the official `standardwebhooks` package,
// exactly as README.md shows. Usage: node verify.mjs SECRET CAPTURE.json
import { readFileSync } from "node:fs";
import { Webhook } from "standardwebhooks";

const [secret, capture] = process.argv.slice(2);
const request = JSON.parse(readFileSync(capture, "utf8"));

const wh = new Webhook(secret);
const event = wh.verify(request.body, request.headers); // throws if forged or stale
console.log(event.type, event.data.id);
