// Read an orderwatch teams message as Teams would: the Workflows envelope,
// then the Adaptive Card parsed and validated with the official
// `adaptivecards` package. Usage: node verify-card.mjs MESSAGE.json
// Prints "<title>: <n> FactSet(s), <n> action(s)"; exits 1 on any problem.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";

// The package's ES build imports without file extensions, which Node does
// not resolve; its bundled build loads as CommonJS.
const AC = createRequire(import.meta.url)("adaptivecards/dist/adaptivecards.js");

const fail = (why) => {
  console.error(why);
  process.exit(1);
};

const message = JSON.parse(readFileSync(process.argv[2], "utf8"));
if (message.type !== "message") fail(`not a message envelope: type ${message.type}`);
const attachment = (message.attachments || [])[0];
if (!attachment || attachment.contentType !== "application/vnd.microsoft.card.adaptive") {
  fail("no Adaptive Card attachment");
}

const card = new AC.AdaptiveCard();
const context = new AC.SerializationContext();
card.parse(attachment.content, context);
const problems = [];
for (let i = 0; i < context.eventCount; i++) problems.push(context.getEventAt(i).message);
for (const event of card.validateProperties().validationEvents) problems.push(event.message);
if (problems.length > 0) fail(`the card does not parse cleanly:\n${problems.join("\n")}`);
if (card.version.toString() !== "1.4") fail(`card version ${card.version}`);

let title = "";
let factSets = 0;
for (let i = 0; i < card.getItemCount(); i++) {
  const item = card.getItemAt(i);
  if (i === 0 && item instanceof AC.TextBlock) title = item.text;
  if (item instanceof AC.FactSet) factSets += 1;
}
if (!title) fail("the card has no title line");
for (let i = 0; i < card.getActionCount(); i++) {
  const action = card.getActionAt(i);
  if (!(action instanceof AC.OpenUrlAction) || !/^https?:\/\//.test(action.url)) {
    fail(`action ${i} is not a link`);
  }
}
console.log(`${title}: ${factSets} FactSet(s), ${card.getActionCount()} action(s)`);
