// The AWS SDK for JavaScript v3 against an emulator that requires signed requests: one line of JSON
// per step, {"step", "ok", "status", "code"}, for tests/access/test_other_clients.py to check.
// Settings come from the environment: ENDPOINT, REGION, KEY_ID, SECRET, PROJECT, BUCKET, FILE.
import { createRequire } from "node:module";
import { createReadStream } from "node:fs";

// The SDK is installed by `npm install` in client_examples/.
const require = createRequire(new URL("../../client_examples/package.json", import.meta.url));
const lfv = require("@aws-sdk/client-lookoutvision");
const s3 = require("@aws-sdk/client-s3");

const env = process.env;
const config = {
  endpoint: env.ENDPOINT,
  region: env.REGION,
  credentials: { accessKeyId: env.KEY_ID, secretAccessKey: env.SECRET },
  maxAttempts: 1,
};
const lookout = new lfv.LookoutVisionClient(config);
const storage = new s3.S3Client({ ...config, forcePathStyle: true });

async function step(name, send) {
  try {
    const result = await send();
    console.log(JSON.stringify({ step: name, ok: true, status: result.$metadata.httpStatusCode, result: result.value }));
  } catch (error) {
    console.log(JSON.stringify({ step: name, ok: false, status: error.$metadata?.httpStatusCode, code: error.name }));
  }
}

async function withValue(send, pick) {
  const result = await send;
  result.value = await pick(result);
  return result;
}

await step("CreateProject", () => lookout.send(new lfv.CreateProjectCommand({ ProjectName: env.PROJECT })));
await step("DescribeProject", () => withValue(
  lookout.send(new lfv.DescribeProjectCommand({ ProjectName: env.PROJECT })),
  (r) => r.ProjectDescription.ProjectName));
await step("PutObject", () => storage.send(new s3.PutObjectCommand({
  Bucket: env.BUCKET, Key: "js/small.txt", Body: "from JavaScript", ContentType: "text/plain" })));
// A file stream: the SDK sends it aws-chunked, with its checksum in a trailer.
await step("PutObjectStream", () => storage.send(new s3.PutObjectCommand({
  Bucket: env.BUCKET, Key: "js/streamed.bin", Body: createReadStream(env.FILE) })));
await step("GetObject", () => withValue(
  storage.send(new s3.GetObjectCommand({ Bucket: env.BUCKET, Key: "js/small.txt" })),
  (r) => r.Body.transformToString()));
await step("ListObjectsV2", () => withValue(
  storage.send(new s3.ListObjectsV2Command({ Bucket: env.BUCKET, Prefix: "js/" })),
  (r) => (r.Contents || []).map((o) => o.Key).sort()));
