// Runs an official JavaScript engine client, as its users call it, and prints what every call
// answered. Started by tests/integration/official_clients.py with NODE_PATH at the installed
// packages (package.json here pins them):
//
//     node driver.mjs elasticsearch|opensearch URL  < plan.json  > answers.json
//
// Same plan and answer shapes as client_driver.py: per call {"ok": true, "body": raw body} or
// {"ok": false, "error": the error's class, "status", "body"}. Nothing here asserts.
import { createRequire } from "node:module";
import { readFileSync } from "node:fs";
import path from "node:path";

const [kind, url] = process.argv.slice(2);
const plan = JSON.parse(readFileSync(0, "utf8"));
const require = createRequire(path.join(process.env.CLIENT_MODULES, "driver.cjs"));

function elasticsearch() {
  const { Client } = require("@elastic/elasticsearch");
  const { version } = require("@elastic/elasticsearch/package.json");
  const client = new Client({ node: url, requestTimeout: 60000, maxRetries: 0 });
  const call = (step) => {
    switch (step.op) {
      case "info": return client.info();
      case "search": return client.search({ index: step.index, ...step.body });
      case "msearch": return client.msearch({ index: step.index, searches: step.searches });
      case "count": return client.count({ index: step.index, ...(step.body || {}) });
      case "get": return client.get({ index: step.index, id: step.id });
      case "mget": return client.mget({ index: step.index, ...step.body });
      default: throw new Error(`unknown op ${step.op}`);
    }
  };
  return { version, call };
}

function opensearch() {
  const { Client } = require("@opensearch-project/opensearch");
  const { version } = require("@opensearch-project/opensearch/package.json");
  const client = new Client({ node: url, requestTimeout: 60000, maxRetries: 0 });
  const call = async (step) => {
    let answer;
    switch (step.op) {
      case "info": answer = await client.info(); break;
      case "search": answer = await client.search({ index: step.index, body: step.body }); break;
      case "msearch": answer = await client.msearch({ index: step.index, body: step.searches }); break;
      case "count": answer = await client.count({ index: step.index, body: step.body }); break;
      case "get": answer = await client.get({ index: step.index, id: step.id }); break;
      case "mget": answer = await client.mget({ index: step.index, body: step.body }); break;
      default: throw new Error(`unknown op ${step.op}`);
    }
    return answer.body; // this client answers {body, statusCode, headers, meta}
  };
  return { version, call };
}

const { version, call } = kind === "elasticsearch" ? elasticsearch() : opensearch();
const answers = [];
for (const step of plan) {
  try {
    answers.push({ ok: true, body: await call(step) });
  } catch (err) {
    const meta = err.meta || {};
    const status = typeof meta.statusCode === "number" ? meta.statusCode : null;
    const body = meta.body !== undefined ? meta.body : String(err);
    answers.push({ ok: false, error: err.name || err.constructor.name, status, body });
  }
}
process.stdout.write(JSON.stringify({ version, answers }));
