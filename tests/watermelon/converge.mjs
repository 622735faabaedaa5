// Real WatermelonDB databases (LokiJS adapter, in Node) synchronizing a participant's interviews
// through Veldwerk's WatermelonDB endpoints, with `synchronize()` handlers written as PROTOCOL.md
// ("WatermelonDB") tells an app team to.
//
// Input (environment): VELDWERK_URL, VELDWERK_COHORT, and the access tokens PHONE_TOKEN and
// TABLET_TOKEN (two devices of one participant), FRESH_TOKEN (a third device of hers that has
// never synced) and OTHER_TOKEN (another participant of the cohort).
// Output: one JSON line with what each device holds; the process fails on any broken promise.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { Database, Model, appSchema, tableSchema } from '@nozbe/watermelondb';
import { synchronize } from '@nozbe/watermelondb/sync/index.js';
import LokiModule from '@nozbe/watermelondb/adapters/lokijs/index.js';
import RandomId from '@nozbe/watermelondb/utils/common/randomId/index.js';
import Logger from '@nozbe/watermelondb/utils/common/logger/index.js';

const LokiJSAdapter = LokiModule.default ?? LokiModule;
(Logger.default ?? Logger).silence();
// Record ids are UUIDs on the server.
(RandomId.setGenerator ?? RandomId.default.setGenerator)(() => randomUUID());

const url = process.env.VELDWERK_URL;
const cohort = process.env.VELDWERK_COHORT;

class Interview extends Model {
  static table = 'interviews';
}

const schema = appSchema({
  version: 1,
  tables: [
    tableSchema({
      name: 'interviews',
      columns: [
        { name: 'cohort_id', type: 'string' },
        { name: 'owner_id', type: 'string', isOptional: true },
        { name: 'status', type: 'string' },
        { name: 'name_consent', type: 'boolean' },
        { name: 'interviewee_role', type: 'string', isOptional: true },
        { name: 'interviewed_on', type: 'string', isOptional: true },
        { name: 'place', type: 'string', isOptional: true },
        { name: 'questions', type: 'string', isOptional: true },
        { name: 'notes', type: 'string', isOptional: true },
        { name: 'insights', type: 'string', isOptional: true },
      ],
    }),
  ],
});

// The two handlers an app writes: one fetch each, and another sync while the server says it
// has more (answers are cut at `limit` changes; a small one here, so that the first sync of 200
// interviews takes several). `beforePush` lets the test act once between a pull and its push.
const LIMIT = 40;

async function sync(database, token, beforePush) {
  const headers = {
    authorization: `Bearer ${token}`,
    'veldwerk-protocol': '1',
    'content-type': 'application/json',
  };
  let hook = beforePush;
  let more = true;
  while (more) {
    await synchronize({
      database,
      sendCreatedAsUpdated: true,
      pullChanges: async ({ lastPulledAt, schemaVersion, migration }) => {
        const query = `last_pulled_at=${lastPulledAt}&schema_version=${schemaVersion}`
          + `&migration=${encodeURIComponent(JSON.stringify(migration))}&limit=${LIMIT}`;
        const answer = await fetch(`${url}/v1/watermelon/sync?${query}`, { headers });
        if (!answer.ok) throw new Error(`pull: ${answer.status} ${await answer.text()}`);
        const { changes, timestamp, has_more } = await answer.json();
        more = has_more;
        return { changes, timestamp };
      },
      pushChanges: async ({ changes, lastPulledAt }) => {
        if (hook) {
          const once = hook;
          hook = null;
          await once();
        }
        const answer = await fetch(`${url}/v1/watermelon/sync?last_pulled_at=${lastPulledAt}`, {
          method: 'POST',
          headers,
          body: JSON.stringify(changes),
        });
        if (!answer.ok) throw new Error(`push: ${answer.status} ${await answer.text()}`);
        return answer.json();
      },
    });
  }
}

async function device(name, token) {
  const adapter = new LokiJSAdapter({
    schema,
    dbName: name,
    useWebWorker: false,
    useIncrementalIndexedDB: false,
    extraLokiOptions: { autosave: false },
  });
  const database = new Database({ adapter, modelClasses: [Interview] });
  const interviews = database.get('interviews');
  return {
    name,
    sync: (beforePush) => sync(database, token, beforePush),
    async insert(fields) {
      return database.write(() => interviews.create((record) => {
        for (const [column, value] of Object.entries(fields)) record._setRaw(column, value);
      }));
    },
    async edit(id, fields) {
      const record = await interviews.find(id);
      await database.write(() => record.update(() => {
        for (const [column, value] of Object.entries(fields)) record._setRaw(column, value);
      }));
    },
    async remove(id) {
      const record = await interviews.find(id);
      await database.write(() => record.markAsDeleted());
    },
    async holds() {
      const byId = {};
      for (const record of await interviews.query().fetch()) {
        const { _status, _changed, ...raw } = record._raw;
        assert.equal(_status, 'synced', `${name}: ${raw.id} is synced`);
        byId[raw.id] = raw;
      }
      return byId;
    },
  };
}

const phone = await device('phone', process.env.PHONE_TOKEN);
const tablet = await device('tablet', process.env.TABLET_TOKEN);
const other = await device('other', process.env.OTHER_TOKEN);

// The phone records two interviews and syncs; the tablet gets them.
const shared = (await phone.insert({
  cohort_id: cohort, status: 'draft', name_consent: false, notes: 'begin',
  questions: JSON.stringify([{ vraag: 'Wat valt op?', antwoord: 'De markt' }]),
})).id;
const doomed = (await phone.insert({ cohort_id: cohort, status: 'draft', name_consent: false, notes: 'weg' })).id;
await phone.sync();
await tablet.sync();
assert.equal((await tablet.holds())[shared]?.notes, 'begin', 'the tablet pulled the interview');

// Offline on both: the same field on each, another field on the tablet, a delete on the tablet,
// 200 new interviews with long notes on the phone.
await phone.edit(shared, { notes: 'telefoon' });
await tablet.edit(shared, { notes: 'tablet', place: 'Buurthuis' });
await tablet.remove(doomed);
const written = {};
for (let i = 0; i < 200; i++) {
  const notes = `Interview ${i}: ` + 'Bewoners vertellen over de wijk. '.repeat(60).slice(0, 2000);
  const { id } = await phone.insert({
    cohort_id: cohort, status: 'done', name_consent: false, interviewee_role: 'wijkagent',
    interviewed_on: '2027-01-12', notes,
  });
  written[id] = notes;
}

// Another participant writes her own interview at the same time.
const hers = (await other.insert({ cohort_id: cohort, status: 'draft', name_consent: false, notes: 'van een ander' })).id;
await other.sync();

// Reconnect. The tablet pulls first, and the phone pushes its edits in between the tablet's pull
// and push: the server refuses the tablet's push (the interview changed after its pull), as
// WatermelonDB's contract says, and the tablet's next sync pulls, keeps its own edits per column
// and pushes them. Then the phone syncs again to receive them.
let refused = null;
await assert.rejects(
  tablet.sync(() => phone.sync()),
  (err) => { refused = String(err); return /push: 409 .*changed_since_pull/.test(refused); },
  'a push over a record changed since the pull is refused',
);
await tablet.sync();
await phone.sync();

const fresh = await device('fresh', process.env.FRESH_TOKEN);
await fresh.sync();

const [onPhone, onTablet, onFresh, onOther] = await Promise.all([phone.holds(), tablet.holds(), fresh.holds(), other.holds()]);
assert.deepEqual(onPhone, onFresh, 'the phone holds what a fresh device pulls');
assert.deepEqual(onTablet, onFresh, 'the tablet holds what a fresh device pulls');
assert.equal(onFresh[shared].notes, 'tablet', 'the edit pushed last wins');
assert.equal(onFresh[shared].place, 'Buurthuis', 'an edit of another field survives');
assert.deepEqual(JSON.parse(onFresh[shared].questions), [{ vraag: 'Wat valt op?', antwoord: 'De markt' }]);
assert.equal(onFresh[doomed], undefined, 'the delete reached every device');
assert.equal(onFresh[hers], undefined, "another participant's interview never arrives");
for (const [id, notes] of Object.entries(written)) {
  assert.equal(onFresh[id]?.notes, notes, `offline interview ${id} arrived intact`);
  assert.equal(onFresh[id]?.interviewed_on, '2027-01-12');
}
assert.deepEqual(Object.keys(onOther), [hers], 'the other participant holds only her own');

console.log(JSON.stringify({
  phone: Object.keys(onPhone).length,
  tablet: Object.keys(onTablet).length,
  fresh: Object.keys(onFresh).length,
  other: Object.keys(onOther).length,
}));
