// Uploads a file to a Veldwerk attachment with the real tus-js-client, as an app would: a first
// client instance is stopped halfway (the app was killed), a second one resumes from the
// server's offset and finishes. Run by tests/tests/api/tus.rs:
//   node upload.mjs <content URL> <access token> <file>
// Prints one JSON line: where the first instance stopped, the offset the server reported, and
// the first progress the second instance reported.
import { readFileSync } from 'node:fs';
import { Upload } from 'tus-js-client';

const [url, token, file] = process.argv.slice(2);
const data = readFileSync(file);
const headers = { Authorization: `Bearer ${token}` };

let stoppedAt = 0;
await new Promise((resolve, reject) => {
  const upload = new Upload(data, {
    uploadUrl: url,
    headers,
    chunkSize: 256 * 1024,
    retryDelays: null,
    onProgress(sent) {
      if (stoppedAt === 0 && sent >= data.length / 2) {
        stoppedAt = sent;
        upload.abort().then(resolve, reject);
      }
    },
    onSuccess: () => reject(new Error('the upload finished before it was stopped')),
    onError: reject,
  });
  upload.start();
});

// What a new instance will find: the server keeps what arrived.
const head = await fetch(url, { method: 'HEAD', headers: { ...headers, 'Tus-Resumable': '1.0.0' } });
const serverOffset = Number(head.headers.get('upload-offset'));

let firstProgress = null;
await new Promise((resolve, reject) => {
  // No chunkSize: the whole rest in one request, which the server stores part by part.
  const upload = new Upload(data, {
    uploadUrl: url,
    headers,
    retryDelays: [0, 500, 1000, 2000],
    onProgress(sent) {
      if (firstProgress === null) firstProgress = sent;
    },
    onSuccess: resolve,
    onError: reject,
  });
  upload.start();
});

console.log(JSON.stringify({ stoppedAt, serverOffset, firstProgress, length: data.length }));
