// Drives jsforce's Bulk API 2.0 client through a plan read from stdin and prints what happened as JSON.
//
// Connection: SALESFORCE_INSTANCE_URL and SALESFORCE_ACCESS_TOKEN (the token stays out of argv and
// out of the output); the sandbox's CA is trusted through NODE_EXTRA_CA_CERTS, TLS is always verified.
//
// Plan (JSON on stdin):
//   { "apiVersion": "59.0", "pollIntervalMs": 200, "pollTimeoutMs": 60000,
//     "loads": [ { "name": "insert", "job": { "object": "Opportunity", "operation": "insert" },
//                  "records": [ {...}, ... ] },
//                { "name": "upsert", "job": { ..., "externalIdFieldName": "External_Id__c" },
//                  "csv": "...", "streamChunkBytes": 4093 } ],
//     "abortedUpload": { "job": {...}, "records": [...] },
//     "queries": [ "SELECT COUNT() FROM Opportunity WHERE ...", ... ],
//     "bulkQueries": [ { "name": "live", "soql": "SELECT ...", "scanAll": false }, ... ] }
// A load gives jsforce either records (it serialises them to CSV) or CSV text, which is fed as a
// stream of `streamChunkBytes`-byte buffers (cut anywhere, even inside a UTF-8 character).
//
// Output (JSON on stdout): jsforce and Node versions, per load the job id, jsforce's parsed
// successful/failed/unprocessed results and the final job info (or the error jsforce raised), the
// aborted job's unprocessed records (parsed and raw), the REST query results, the records of each
// Bulk API 2.0 query job (`conn.bulk2.query`), and every HTTPS request jsforce sent (method, path,
// status, Transfer-Encoding, Content-Length, body bytes and writes).

import https from 'node:https';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';

import jsforce from 'jsforce';

const JOB_ID_IN_PATH = /\/jobs\/ingest\/(750\w{15})\//;

function requireEnv(name) {
  const value = process.env[name];
  if (!value) {
    throw new Error(`environment variable ${name} is not set`);
  }
  return value;
}

function headerValue(rawHead, name) {
  const match = new RegExp(`^${name}:\\s*(.*?)\\r?$`, 'im').exec(rawHead ?? '');
  return match ? match[1] : null;
}

// jsforce hides how it frames request bodies, so every HTTPS request is observed where Node sends it.
function recordHttpsRequests(log) {
  const send = https.request;
  https.request = function recordedRequest(...args) {
    const request = send.apply(this, args);
    const entry = {
      method: request.method,
      path: request.path.split('?')[0],
      bodyBytes: 0,
      bodyWrites: 0,
    };
    log.push(entry);
    const write = request.write;
    request.write = function countedWrite(chunk, ...rest) {
      entry.bodyBytes += Buffer.byteLength(chunk);
      entry.bodyWrites += 1;
      return write.call(this, chunk, ...rest);
    };
    const end = request.end;
    request.end = function countedEnd(chunk, ...rest) {
      if (chunk && typeof chunk !== 'function') {
        entry.bodyBytes += Buffer.byteLength(chunk);
        entry.bodyWrites += 1;
      }
      return end.call(this, chunk, ...rest);
    };
    request.once('response', (response) => {
      entry.status = response.statusCode;
    });
    request.once('finish', () => {
      // `_header` is the request head exactly as written to the socket; Node adds
      // Transfer-Encoding itself, so getHeader() cannot show it.
      entry.transferEncoding = headerValue(request._header, 'transfer-encoding');
      entry.contentLength = headerValue(request._header, 'content-length');
    });
    return request;
  };
}

function describeError(error) {
  return { name: error.name, errorCode: error.errorCode ?? null, message: error.message };
}

function csvStream(csv, chunkBytes) {
  const bytes = Buffer.from(csv, 'utf8');
  const chunks = [];
  for (let start = 0; start < bytes.length; start += chunkBytes) {
    chunks.push(bytes.subarray(start, start + chunkBytes));
  }
  return Readable.from(chunks);
}

function jobIdSentIn(requests) {
  for (const { path } of requests) {
    const match = JOB_ID_IN_PATH.exec(path);
    if (match) {
      return match[1];
    }
  }
  return null;
}

async function runLoad(conn, plan, load, requests) {
  const input =
    typeof load.csv === 'string' ? csvStream(load.csv, load.streamChunkBytes) : load.records;
  const firstRequest = requests.length;
  try {
    const results = await conn.bulk2.loadAndWaitForResults({
      ...load.job,
      input,
      pollInterval: plan.pollIntervalMs,
      pollTimeout: plan.pollTimeoutMs,
    });
    const jobId = jobIdSentIn(requests.slice(firstRequest));
    const jobInfo = await conn.bulk2.job('ingest', { id: jobId }).check();
    return { jobId, jobInfo, ...results, error: null };
  } catch (error) {
    return { jobId: jobIdSentIn(requests.slice(firstRequest)), error: describeError(error) };
  }
}

async function runAbortedUpload(conn, { job: jobOptions, records }) {
  const job = conn.bulk2.createJob(jobOptions);
  try {
    await job.open();
    await job.uploadData(records);
    await job.abort();
    const jobInfo = await job.check();
    const unprocessedCsv = await job.getUnprocessedRecords(true);
    const unprocessedRecords = await job.getUnprocessedRecords();
    return { jobId: job.id, jobInfo, unprocessedCsv, unprocessedRecords, error: null };
  } catch (error) {
    return { jobId: job.id ?? null, error: describeError(error) };
  }
}

async function runQuery(conn, soql) {
  try {
    const { totalSize, done, records } = await conn.query(soql);
    return { soql, totalSize, done, records, error: null };
  } catch (error) {
    return { soql, error: describeError(error) };
  }
}

async function runBulkQuery(conn, plan, { soql, scanAll }) {
  try {
    const recordStream = await conn.bulk2.query(soql, {
      scanAll,
      pollInterval: plan.pollIntervalMs,
      pollTimeout: plan.pollTimeoutMs,
    });
    const records = await new Promise((resolve, reject) => {
      const rows = [];
      recordStream.on('record', (record) => rows.push(record));
      recordStream.on('end', () => resolve(rows));
      recordStream.on('error', reject);
    });
    return { records, error: null };
  } catch (error) {
    return { error: describeError(error) };
  }
}

async function main() {
  const plan = JSON.parse(await text(process.stdin));
  const requests = [];
  recordHttpsRequests(requests);
  const conn = new jsforce.Connection({
    instanceUrl: requireEnv('SALESFORCE_INSTANCE_URL'),
    accessToken: requireEnv('SALESFORCE_ACCESS_TOKEN'),
    version: plan.apiVersion,
  });
  const loads = {};
  for (const load of plan.loads) {
    loads[load.name] = await runLoad(conn, plan, load, requests);
  }
  const abortedUpload = plan.abortedUpload
    ? await runAbortedUpload(conn, plan.abortedUpload)
    : null;
  const queries = [];
  for (const soql of plan.queries) {
    queries.push(await runQuery(conn, soql));
  }
  const bulkQueries = {};
  for (const query of plan.bulkQueries) {
    bulkQueries[query.name] = await runBulkQuery(conn, plan, query);
  }
  const summary = {
    jsforceVersion: jsforce.VERSION,
    nodeVersion: process.version,
    loads,
    abortedUpload,
    queries,
    bulkQueries,
    requests,
  };
  process.stdout.write(`${JSON.stringify(summary)}\n`);
}

await main();
