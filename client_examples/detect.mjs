#!/usr/bin/env node
// Detect anomalies in images with a trained Lookout for Vision model, from Node.js.
//
// Client: AWS SDK for JavaScript v3, @aws-sdk/client-lookoutvision 3.x (tested with 3.918.0), Node.js >= 18.
// The package is still published; `npm install` in client_examples/ installs the version in package.json.
//
// Usage, with `lookout-emulator serve` running and a trained model (e.g. from aws_cli.sh or quickstart.py):
//   node client_examples/detect.mjs --project NAME [--model-version N] [--keep-hosted] IMAGE...
// Without --model-version it uses the project's latest trained (or hosted) model version.
// Starts the model unless it is hosted, prints one line per image (JPEG or PNG), then stops the model
// again if it started it (hosted models are billed by the hour on AWS).
// Options: --endpoint-url (default $AWS_ENDPOINT_URL or http://127.0.0.1:5010), --region, --poll-seconds.
import { readFile } from "node:fs/promises";
import { basename, extname } from "node:path";
import { parseArgs } from "node:util";

import {
  DescribeModelCommand,
  DetectAnomaliesCommand,
  ListModelsCommand,
  LookoutVisionClient,
  StartModelCommand,
  StopModelCommand,
} from "@aws-sdk/client-lookoutvision";

const CONTENT_TYPES = { ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png" };
const IN_PROGRESS = new Set(["TRAINING", "STARTING_HOSTING", "STOPPING_HOSTING", "SYSTEM_UPDATING"]);

const USAGE = "usage: detect.mjs --project NAME [--model-version N] [--keep-hosted] IMAGE...";

// Every failure ends the program with one line on stderr, never a stack trace: a user who mistyped a
// project name needs the service's message, not the SDK's internals.
function fail(message, exitCode = 1) {
  console.error(`detect.mjs: ${message}`);
  process.exit(exitCode);
}

let parsed;
try {
  parsed = parseArgs({
    allowPositionals: true,
    options: {
      project: { type: "string" },
      "model-version": { type: "string" },
      "keep-hosted": { type: "boolean", default: false },
      "endpoint-url": { type: "string", default: process.env.AWS_ENDPOINT_URL ?? "http://127.0.0.1:5010" },
      region: { type: "string", default: process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1" },
      "poll-seconds": { type: "string", default: "1" },
    },
  });
} catch (error) {
  fail(`${error.message} (${USAGE})`, 2); // an unknown option or a missing value
}
const { values: options, positionals: images } = parsed;
if (!options.project || images.length === 0) fail(USAGE, 2);

const client = new LookoutVisionClient({
  endpoint: options["endpoint-url"],
  region: options.region,
  // Without a credentials file the emulator accepts any credentials, but the SDK needs some to sign
  // requests; a server started with --credentials-file wants one of its keys in AWS_ACCESS_KEY_ID.
  ...(process.env.AWS_ACCESS_KEY_ID || process.env.AWS_PROFILE
    ? {}
    : { credentials: { accessKeyId: "testing", secretAccessKey: "testing" } }),
});
// The newest model version that can detect: trained, or hosted already (ListModels pages through them all).
async function latestUsableVersion(project) {
  const usable = [];
  let NextToken;
  do {
    const page = await client.send(new ListModelsCommand({ ProjectName: project, NextToken }));
    usable.push(...page.Models.filter((m) => ["TRAINED", "HOSTED"].includes(m.Status)).map((m) => Number(m.ModelVersion)));
    NextToken = page.NextToken;
  } while (NextToken);
  if (usable.length === 0) fail(`project ${project} has no trained model: train one first`);
  return String(Math.max(...usable));
}

// The model main() works with; its version is looked up there, where a failure is reported.
const model = { ProjectName: options.project, ModelVersion: options["model-version"] };

async function status() {
  const { ModelDescription: found } = await client.send(new DescribeModelCommand(model));
  return [found.Status, found.StatusMessage];
}

// Lookout for Vision has no waiters: poll DescribeModel until the status is `goal`.
async function waitFor(goal) {
  const started = Date.now();
  let last;
  for (;;) {
    const [current, message] = await status();
    if (current !== last) {
      console.log(`  model ${model.ModelVersion}: ${current} (${Math.round((Date.now() - started) / 1000)} s)`);
    }
    last = current;
    if (current === goal) return;
    if (!IN_PROGRESS.has(current)) throw new Error(`model ${model.ModelVersion} ended in ${current}: ${message}`);
    await new Promise((resolve) => setTimeout(resolve, Number(options["poll-seconds"]) * 1000));
  }
}

async function detect(path) {
  const contentType = CONTENT_TYPES[extname(path).toLowerCase()];
  if (!contentType) throw new Error(`${path}: only .jpg, .jpeg and .png images can be analysed`);
  const { DetectAnomalyResult: result } = await client.send(
    new DetectAnomaliesCommand({ ...model, ContentType: contentType, Body: await readFile(path) }),
  );
  // Segmentation models also return Anomalies (the first is the background) and an AnomalyMask PNG.
  // TotalPercentageArea is, despite its name, a fraction of the image.
  const areas = (result.Anomalies ?? [])
    .slice(1)
    .map((a) => `${a.Name} ${(100 * a.PixelAnomaly.TotalPercentageArea).toFixed(1)}%`);
  console.log(
    `  ${basename(path).padEnd(28)} ${(result.IsAnomalous ? "anomaly" : "normal").padEnd(8)} ` +
      `confidence ${result.Confidence.toFixed(2)}${areas.length ? `  ${areas.join(", ")}` : ""}`,
  );
}

async function main() {
  model.ModelVersion ??= await latestUsableVersion(model.ProjectName);
  const [initial] = await status();
  const startedHere = initial !== "HOSTED";
  if (startedHere) {
    console.log(`Starting model ${model.ModelVersion} of ${model.ProjectName}`);
    await client.send(new StartModelCommand({ ...model, MinInferenceUnits: 1 }));
    await waitFor("HOSTED");
  }
  try {
    console.log(`Detecting anomalies in ${images.length} images`);
    for (const path of images) await detect(path);
  } finally {
    if (startedHere && !options["keep-hosted"]) {
      console.log(`Stopping model ${model.ModelVersion}`);
      await client.send(new StopModelCommand(model));
      await waitFor("TRAINED");
    }
  }
}

main().catch((error) => {
  // Service errors have a name (ResourceNotFoundException) and a message; a refused connection is an
  // AggregateError with no message, only a code.
  const hint = error.code === "ECONNREFUSED" ? ` (is lookout-emulator serve running at ${options["endpoint-url"]}?)` : "";
  fail(`${error.name}: ${error.message || error.code || "no message"}${hint}`.replace(/\s+/g, " "));
});
