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

const { values: options, positionals: images } = parseArgs({
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
if (!options.project || images.length === 0) {
  console.error("usage: detect.mjs --project NAME [--model-version N] [--keep-hosted] IMAGE...");
  process.exit(2);
}

const client = new LookoutVisionClient({
  endpoint: options["endpoint-url"],
  region: options.region,
  // The emulator accepts any credentials; the SDK needs some to sign requests.
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
  if (usable.length === 0) {
    console.error(`project ${project} has no trained model: train one first`);
    process.exit(1);
  }
  return String(Math.max(...usable));
}

const model = {
  ProjectName: options.project,
  ModelVersion: options["model-version"] ?? (await latestUsableVersion(options.project)),
};

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
  console.error(`error: ${error.name}: ${error.message}`);
  process.exit(1);
});
