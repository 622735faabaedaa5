// A small app written against the TypeScript client that openapi-typescript generates from the
// running server's OpenAPI document (`schema.d.ts` beside this file), with openapi-fetch. It is
// type-checked with `tsc --strict` and run against the server by
// tests/tests/api/typescript_client.rs: a trainer logs in and invites, a participant enrols and
// links a second device, the phone pushes an interview with an attachment and uploads its bytes,
// the tablet pulls both and downloads the file. A change to the document that breaks such a
// client breaks the type check; a server that does not do what the document says breaks the run.
//
// Input (environment): VELDWERK_URL, TRAINER_EMAIL, TRAINER_PASSWORD.
// Output: one JSON line; the process fails on any broken promise.
import assert from 'node:assert/strict';
import { createHash, randomUUID } from 'node:crypto';
import createClient from 'openapi-fetch';
import type { components, paths } from './schema.js';

type Mutation = components['schemas']['SyncMutation'];
type Change = components['schemas']['SyncChange'];
type Interview = components['schemas']['SyncInterviewsRecord'];
type Attachment = components['schemas']['SyncAttachmentsRecord'];

const url = process.env.VELDWERK_URL!;
const api = createClient<paths>({ baseUrl: `${url}/v1` });
const sync = { 'veldwerk-protocol': '1' } as const;

/** The answer's data, or a failure that says what went wrong. */
function must<T>(result: { data?: T; error?: unknown; response: Response }, what: string): T {
  if (result.data === undefined) {
    throw new Error(`${what}: ${result.response.status} ${JSON.stringify(result.error)}`);
  }
  return result.data;
}

const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

// A trainer logs in and invites; a participant enrols and links her tablet.
const trainer = must(
  await api.POST('/auth/login', {
    body: { email: process.env.TRAINER_EMAIL!, password: process.env.TRAINER_PASSWORD! },
  }),
  'login',
);
const cohorts = must(await api.GET('/cohorts', { headers: bearer(trainer.access_token) }), 'cohorts');
const [cohort] = cohorts;
assert.ok(cohort, 'the trainer has a cohort');
const cohortId = cohort.id;
const invites = must(
  await api.POST('/cohorts/{id}/invites', {
    params: { path: { id: cohortId } },
    body: { count: 1 },
    headers: bearer(trainer.access_token),
  }),
  'invite',
);
const phone = must(
  await api.POST('/auth/enrol', { body: { invite_code: invites[0]!.code, display_name: 'Sanne' } }),
  'enrol',
);
const link = must(
  await api.POST('/me/device-link-codes', { headers: bearer(phone.access_token) }),
  'link code',
);
const tablet = must(
  await api.POST('/auth/link-device', { body: { link_code: link.code, device_name: 'tablet' } }),
  'link device',
);

// The phone records an interview with a photo of the whiteboard, offline, and pushes both.
const node = phone.device_id.replaceAll('-', '');
const clock = (counter: number) =>
  `${String(Date.now()).padStart(13, '0')}-${String(counter).padStart(6, '0')}-${node}`;
const interviewId = randomUUID();
const attachmentId = randomUUID();
const photo = new TextEncoder().encode('whiteboard: '.repeat(500));
const sha256 = createHash('sha256').update(photo).digest('hex');
const mutations: Mutation[] = [
  {
    id: randomUUID(),
    collection: 'interviews',
    record_id: interviewId,
    cohort_id: cohortId,
    fields: {
      status: 'draft',
      name_consent: false,
      interviewee_role: 'wijkagent',
      interviewed_on: '2027-01-12',
      notes: 'Gesprek bij de markt',
      questions: [{ vraag: 'Wat valt op?', antwoord: 'De drukte' }],
    },
    clock: clock(0),
  },
  {
    id: randomUUID(),
    collection: 'attachments',
    record_id: attachmentId,
    cohort_id: cohortId,
    fields: {
      parent_collection: 'interviews',
      parent_id: interviewId,
      file_name: 'whiteboard.jpg',
      content_type: 'image/jpeg',
      size: photo.length,
      sha256,
    },
    clock: clock(1),
  },
];
const pushed = must(
  await api.POST('/sync/push', {
    params: { header: sync },
    body: { mutations },
    headers: bearer(phone.access_token),
  }),
  'push',
);
assert.deepEqual(pushed.results.map((result) => result.status), ['applied', 'applied'], JSON.stringify(pushed));

// Its bytes, as a tus upload in two chunks (offset first), then the attachment is stored.
const before = must(
  await api.GET('/attachments/{id}', { params: { path: { id: attachmentId } }, headers: bearer(phone.access_token) }),
  'attachment',
);
assert.equal(before.state, 'pending');
assert.equal(before.received, 0);
for (const [start, end] of [[0, 2000], [2000, photo.length]] as const) {
  const answer = await fetch(`${url}/v1/attachments/${attachmentId}/content`, {
    method: 'PATCH',
    headers: {
      ...bearer(phone.access_token),
      'tus-resumable': '1.0.0',
      'upload-offset': String(start),
      'content-type': 'application/offset+octet-stream',
    },
    body: photo.slice(start, end),
  });
  assert.equal(answer.status, 204, await answer.text());
  assert.equal(answer.headers.get('upload-offset'), String(end));
}

// The tablet pulls everything and finds both, typed by collection.
const changes: Change[] = [];
let cursor: string | undefined;
for (;;) {
  const page = must(
    await api.GET('/sync/pull', {
      params: { header: sync, query: { cursor, limit: 50 } },
      headers: bearer(tablet.access_token),
    }),
    'pull',
  );
  changes.push(...page.changes);
  cursor = page.cursor;
  if (!page.has_more) break;
}
let interview: Interview | undefined;
let attachment: Attachment | undefined;
for (const change of changes) {
  if (change.op !== 'put') continue;
  if (change.collection === 'interviews' && change.id === interviewId) interview = change;
  if (change.collection === 'attachments' && change.id === attachmentId) attachment = change;
}
assert.ok(interview, 'the tablet pulled the interview');
assert.equal(interview.fields.notes, 'Gesprek bij de markt');
assert.deepEqual(interview.fields.questions, [{ vraag: 'Wat valt op?', antwoord: 'De drukte' }]);
assert.equal(interview.owner_id, phone.user.id);
assert.ok(attachment, 'the tablet pulled the attachment');
assert.equal(attachment.fields.state, 'stored');
assert.equal(attachment.fields.parent_id, interviewId);

// And downloads the photo.
const download = await api.GET('/attachments/{id}/content', {
  params: { path: { id: attachmentId } },
  headers: bearer(tablet.access_token),
  parseAs: 'arrayBuffer',
});
assert.equal(download.response.status, 200);
const received = new Uint8Array(download.data as ArrayBuffer);
assert.equal(createHash('sha256').update(received).digest('hex'), sha256);

console.log(JSON.stringify({ changes: changes.length, interview: interview.id, attachment: attachment.fields.state }));
