// Real RxDB databases (memory storage) replicating a participant's interviews through Veldwerk's
// RxDB endpoints, with handlers written as PROTOCOL.md ("RxDB") tells an app team to.
//
// Input (environment): VELDWERK_URL, VELDWERK_COHORT, and the access tokens PHONE_TOKEN and
// TABLET_TOKEN (two devices of one participant), FRESH_TOKEN (a third device of hers that has
// never synced) and OTHER_TOKEN (another participant of the cohort).
// Output: one JSON line with what each device holds; the process fails on any broken promise.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { createRxDatabase } from 'rxdb';
import { getRxStorageMemory } from 'rxdb/plugins/storage-memory';
import { replicateRxCollection } from 'rxdb/plugins/replication';

const url = process.env.VELDWERK_URL;
const cohort = process.env.VELDWERK_COHORT;

const interviewSchema = {
  version: 0,
  primaryKey: 'id',
  type: 'object',
  properties: {
    id: { type: 'string', maxLength: 36 },
    cohort_id: { type: 'string' },
    owner_id: { type: 'string' },
    version: { type: 'number' },
    clocks: { type: 'object' },
    conflicts: { type: 'array' },
    status: { type: 'string' },
    name_consent: { type: 'boolean' },
    interviewee_role: { type: 'string' },
    place: { type: 'string' },
    notes: { type: 'string' },
    insights: { type: 'string' },
  },
  required: ['id'],
};

// The two handlers an app writes: one fetch each.
function replicate(collection, token) {
  const headers = {
    authorization: `Bearer ${token}`,
    'veldwerk-protocol': '1',
    'content-type': 'application/json',
  };
  const base = `${url}/v1/rxdb/${collection.name}`;
  return replicateRxCollection({
    collection,
    replicationIdentifier: `veldwerk-${collection.name}`,
    live: false,
    retryTime: 200,
    pull: {
      batchSize: 50,
      async handler(checkpoint, batchSize) {
        const cursor = encodeURIComponent(checkpoint?.cursor ?? '');
        const answer = await fetch(`${base}/pull?cursor=${cursor}&batchSize=${batchSize}`, { headers });
        if (!answer.ok) throw new Error(`pull: ${answer.status} ${await answer.text()}`);
        return answer.json();
      },
    },
    push: {
      batchSize: 100,
      async handler(rows) {
        const answer = await fetch(`${base}/push`, { method: 'POST', headers, body: JSON.stringify(rows) });
        if (!answer.ok) throw new Error(`push: ${answer.status} ${await answer.text()}`);
        return answer.json();
      },
    },
  });
}

async function device(name, token) {
  const db = await createRxDatabase({ name, storage: getRxStorageMemory() });
  await db.addCollections({ interviews: { schema: interviewSchema } });
  return {
    name,
    db,
    interviews: db.interviews,
    async sync() {
      const replication = replicate(db.interviews, token);
      const errors = [];
      replication.error$.subscribe((err) => errors.push(err));
      await replication.awaitInitialReplication();
      await replication.awaitInSync();
      await replication.cancel();
      assert.deepEqual(errors.map(String), [], `${name}: replication errors`);
    },
    async holds() {
      const docs = await db.interviews.find().exec();
      const byId = {};
      for (const doc of docs) {
        const { _meta, _rev, _attachments, _deleted, ...data } = doc.toMutableJSON(true);
        byId[data.id] = data;
      }
      return byId;
    },
  };
}

const phone = await device('phone', process.env.PHONE_TOKEN);
const tablet = await device('tablet', process.env.TABLET_TOKEN);
const other = await device('other', process.env.OTHER_TOKEN);

// The phone records two interviews and syncs; the tablet gets them.
const shared = randomUUID();
const doomed = randomUUID();
await phone.interviews.insert({ id: shared, cohort_id: cohort, status: 'draft', name_consent: false, notes: 'begin' });
await phone.interviews.insert({ id: doomed, cohort_id: cohort, status: 'draft', name_consent: false, notes: 'weg' });
await phone.sync();
await tablet.sync();
assert.equal((await tablet.interviews.findOne(shared).exec())?.notes, 'begin', 'the tablet pulled the interview');

// Offline on both: the same field on each, another field on the tablet, a delete on the tablet,
// 200 new interviews with long notes on the phone.
await (await phone.interviews.findOne(shared).exec()).incrementalPatch({ notes: 'telefoon' });
await (await tablet.interviews.findOne(shared).exec()).incrementalPatch({ notes: 'tablet', place: 'Buurthuis' });
await (await tablet.interviews.findOne(doomed).exec()).remove();
const written = {};
for (let i = 0; i < 200; i++) {
  const id = randomUUID();
  const notes = `Interview ${i}: ` + 'Bewoners vertellen over de wijk. '.repeat(60).slice(0, 2000);
  written[id] = notes;
  await phone.interviews.insert({ id, cohort_id: cohort, status: 'done', name_consent: false, interviewee_role: 'wijkagent', notes });
}

// Another participant writes her own interview at the same time.
const hers = randomUUID();
await other.interviews.insert({ id: hers, cohort_id: cohort, status: 'draft', name_consent: false, notes: 'van een ander' });
await other.sync();

// Reconnect: the phone first, then the tablet (its edit of the notes is the later one), then
// the phone again to receive it.
await phone.sync();
await tablet.sync();
await phone.sync();

const fresh = await device('fresh', process.env.FRESH_TOKEN);
await fresh.sync();

const [onPhone, onTablet, onFresh, onOther] = await Promise.all([phone.holds(), tablet.holds(), fresh.holds(), other.holds()]);
assert.deepEqual(onPhone, onFresh, 'the phone holds what a fresh device pulls');
assert.deepEqual(onTablet, onFresh, 'the tablet holds what a fresh device pulls');
assert.equal(onFresh[shared].notes, 'tablet', 'the later edit of the same field wins');
assert.equal(onFresh[shared].place, 'Buurthuis', 'an edit of another field survives');
assert.deepEqual(
  onFresh[shared].conflicts?.map((c) => [c.field, c.kept_value, c.lost_value]),
  [['notes', 'tablet', 'telefoon']],
  'the losing value is kept for its owner',
);
assert.equal(onFresh[doomed], undefined, 'the delete reached every device');
assert.equal(onFresh[hers], undefined, "another participant's interview never arrives");
for (const [id, notes] of Object.entries(written)) {
  assert.equal(onFresh[id]?.notes, notes, `offline interview ${id} arrived intact`);
}
assert.deepEqual(Object.keys(onOther), [hers], 'the other participant holds only her own');

console.log(JSON.stringify({
  phone: Object.keys(onPhone).length,
  tablet: Object.keys(onTablet).length,
  fresh: Object.keys(onFresh).length,
  other: Object.keys(onOther).length,
}));
for (const d of [phone, tablet, fresh, other]) await d.db.close();
