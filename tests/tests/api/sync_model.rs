//! A model-based test of the sync core: random sequences of offline writes, deletions with
//! cascades, attachments, sharing and unsharing feedback, a trainer added to and removed from the
//! cohort, replayed batches, and syncs and pulls with random page limits, played by real devices
//! against the real server. After every sync the device must hold exactly what a small in-memory
//! model says its user may see, and every push must be answered as the model expects; at the end
//! every device must equal one that pulled from scratch. A failing case shrinks to a short
//! sequence (proptest). Runs a fixed budget of cases on SQLite and, when configured, PostgreSQL.

use std::collections::{BTreeMap, BTreeSet};

use proptest::{
    prelude::*,
    test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner},
};
use serde_json::json;
use uuid::Uuid;
use veldwerk_sync_protocol::MutationStatus;
use veldwerk_tests::{Backend, TestApp, client::Device};

use crate::{
    fixtures::{User, demo_admin, demo_cohort, demo_trainer, invite_code, new_trainer},
    sync::tablet,
};

/// Cases per database, and operations per case at most.
const CASES: u32 = 8;
const MAX_OPERATIONS: usize = 40;
/// Interview slots per participant: record ids the operations reuse, so they collide.
const SLOTS: usize = 3;
/// The participants' devices: Sanne's phone, Sanne's tablet, Pieter's phone.
const DEVICES: usize = 3;

#[derive(Debug, Clone)]
enum Operation {
    /// Create or edit the interview in a slot of the device's user (offline).
    Write { device: usize, slot: usize },
    /// Delete it, if the device sees it (offline); its attachments go with it.
    Delete { device: usize, slot: usize },
    /// Declare an attachment of it, if the device sees it (offline).
    Attach { device: usize, slot: usize },
    /// Sanne's phone shares or unshares her feedback exercise with Pieter (offline).
    Share { shared: bool },
    /// Push the outbox, then pull with this page limit.
    Sync { device: usize, limit: usize },
    /// Send the device's last pushed batch again, as after a lost answer.
    Replay { device: usize },
    /// The admin adds the second trainer to the cohort, or removes them.
    ToggleTrainer,
    /// The second trainer's device pulls with this page limit.
    TrainerPull { limit: usize },
}

fn operation() -> impl Strategy<Value = Operation> {
    let device = 0..DEVICES;
    let slot = 0..SLOTS;
    prop_oneof![
        4 => (device.clone(), slot.clone()).prop_map(|(device, slot)| Operation::Write { device, slot }),
        2 => (device.clone(), slot.clone()).prop_map(|(device, slot)| Operation::Delete { device, slot }),
        2 => (device.clone(), slot).prop_map(|(device, slot)| Operation::Attach { device, slot }),
        1 => any::<bool>().prop_map(|shared| Operation::Share { shared }),
        4 => (device.clone(), 1..12usize).prop_map(|(device, limit)| Operation::Sync { device, limit }),
        1 => device.prop_map(|device| Operation::Replay { device }),
        1 => Just(Operation::ToggleTrainer),
        2 => (1..12usize).prop_map(|limit| Operation::TrainerPull { limit }),
    ]
}

/// What the server should hold, as far as who sees what.
#[derive(Debug, Default)]
struct Model {
    /// Interviews and attachments that exist: alive (true) or deleted (false), with their owner.
    records: BTreeMap<(&'static str, Uuid), (bool, usize)>,
    /// An attachment's interview.
    parents: BTreeMap<Uuid, Uuid>,
    /// Sanne's feedback exercise: exists, and shared with Pieter.
    feedback: Option<bool>,
    trainer_member: bool,
}

impl Model {
    /// Applies one mutation as the server should; returns whether it is applied.
    fn apply(
        &mut self,
        user: usize,
        collection: &str,
        id: Uuid,
        delete: bool,
        fields: &serde_json::Value,
    ) -> bool {
        match collection {
            "interviews" => match (self.records.get(&("interviews", id)).copied(), delete) {
                (None, false) => {
                    self.records.insert(("interviews", id), (true, user));
                    true
                }
                (Some((true, _)), false) => true,
                (Some((false, _)), false) => false, // record_deleted
                (Some((alive, owner)), true) => {
                    if alive {
                        self.records.insert(("interviews", id), (false, owner));
                        let orphans: Vec<Uuid> = self
                            .parents
                            .iter()
                            .filter(|(_, parent)| **parent == id)
                            .map(|(a, _)| *a)
                            .collect();
                        for attachment in orphans {
                            if let Some(entry) = self.records.get_mut(&("attachments", attachment))
                            {
                                entry.0 = false;
                            }
                        }
                    }
                    true
                }
                (None, true) => false,
            },
            "attachments" => {
                let parent: Uuid = fields["parent_id"].as_str().unwrap().parse().unwrap();
                let alive_parent = self.records.get(&("interviews", parent)) == Some(&(true, user));
                if alive_parent {
                    self.records.insert(("attachments", id), (true, user));
                    self.parents.insert(id, parent);
                }
                alive_parent
            }
            "feedback_exercises" => {
                self.feedback = Some(fields["shared"].as_bool().unwrap());
                true
            }
            other => panic!("the model does not know {other}"),
        }
    }

    /// What a participant (0 Sanne, 1 Pieter) or the trainers (`None`) see, per collection.
    fn visible(
        &self,
        user: Option<usize>,
        feedback_id: Uuid,
    ) -> BTreeMap<&'static str, BTreeSet<Uuid>> {
        let mut seen: BTreeMap<&'static str, BTreeSet<Uuid>> = BTreeMap::new();
        for collection in ["interviews", "attachments", "feedback_exercises"] {
            seen.insert(collection, BTreeSet::new());
        }
        for ((collection, id), (alive, owner)) in &self.records {
            if *alive && user.is_none_or(|user| user == *owner) {
                seen.get_mut(collection).unwrap().insert(*id);
            }
        }
        let feedback_seen = match (self.feedback, user) {
            (None, _) => false,
            (Some(_), None | Some(0)) => true,
            (Some(shared), Some(_)) => shared,
        };
        if feedback_seen {
            seen.get_mut("feedback_exercises")
                .unwrap()
                .insert(feedback_id);
        }
        seen
    }
}

/// What a device holds, in the model's terms.
fn held(device: &Device) -> BTreeMap<&'static str, BTreeSet<Uuid>> {
    ["interviews", "attachments", "feedback_exercises"]
        .into_iter()
        .map(|collection| (collection, device.ids(collection).into_iter().collect()))
        .collect()
}

struct World {
    app: TestApp,
    cohort: Uuid,
    devices: Vec<Device>,
    /// The user (0 Sanne, 1 Pieter) of each device.
    users: [usize; DEVICES],
    user_ids: [Uuid; 2],
    sanne_token: String,
    pieter_token: String,
    last_batch: Vec<Option<Vec<veldwerk_sync_protocol::Mutation>>>,
    admin: User,
    trainer: User,
    second: User,
    second_device: Device,
    feedback: Uuid,
    model: Model,
}

fn check(condition: bool, message: impl FnOnce() -> String) -> Result<(), TestCaseError> {
    if condition {
        Ok(())
    } else {
        Err(TestCaseError::fail(message()))
    }
}

impl World {
    async fn new(app: TestApp) -> Self {
        let trainer = demo_trainer(&app).await;
        let cohort_text = demo_cohort(&app, &trainer).await;
        let cohort: Uuid = cohort_text.parse().unwrap();
        let sanne_session = app
            .enrol(&invite_code(&app, &trainer, &cohort_text).await, "Sanne")
            .await;
        let pieter_session = app
            .enrol(&invite_code(&app, &trainer, &cohort_text).await, "Pieter")
            .await;
        let sanne_phone = Device::new(&app.address, &sanne_session);
        let sanne_token = sanne_phone.debug_token().to_owned();
        let sanne_tablet = tablet(&app, &sanne_phone, &sanne_token).await;
        let pieter_phone = Device::new(&app.address, &pieter_session);
        let pieter_token = pieter_phone.debug_token().to_owned();
        let user_ids = [sanne_phone.user_id, pieter_phone.user_id];
        let admin = demo_admin(&app).await;
        let second = new_trainer(&app, &admin, "tweede@veldwerk.test").await;
        let second_device = Device::new(
            &app.address,
            &app.login("tweede@veldwerk.test", "a-long-trainer-password")
                .await,
        );
        Self {
            app,
            cohort,
            devices: vec![sanne_phone, sanne_tablet, pieter_phone],
            users: [0, 0, 1],
            user_ids,
            sanne_token,
            pieter_token,
            last_batch: vec![None; DEVICES],
            admin,
            trainer,
            second,
            second_device,
            feedback: Uuid::now_v7(),
            model: Model::default(),
        }
    }

    fn slot_id(&self, user: usize, slot: usize) -> Uuid {
        Uuid::new_v5(&self.user_ids[user], format!("interview {slot}").as_bytes())
    }

    async fn run(&mut self, operation: &Operation) -> Result<(), TestCaseError> {
        match *operation {
            Operation::Write { device, slot } => {
                let id = self.slot_id(self.users[device], slot);
                let cohort = self.cohort;
                self.devices[device].write(
                    "interviews",
                    id,
                    Some(cohort),
                    json!({
                        "name_consent": false, "status": "draft", "notes": format!("{operation:?}"),
                    }),
                );
            }
            Operation::Delete { device, slot } => {
                let id = self.slot_id(self.users[device], slot);
                if self.devices[device].view("interviews", id).is_some() {
                    self.devices[device].delete("interviews", id);
                }
            }
            Operation::Attach { device, slot } => {
                let parent = self.slot_id(self.users[device], slot);
                if self.devices[device].view("interviews", parent).is_some() {
                    let cohort = self.cohort;
                    self.devices[device].write("attachments", Uuid::now_v7(), Some(cohort), json!({
                        "parent_collection": "interviews", "parent_id": parent, "file_name": "foto.jpg",
                        "content_type": "image/jpeg", "size": 1,
                        "sha256": "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881",
                    }));
                }
            }
            Operation::Share { shared } => {
                let (cohort, feedback, pieter) = (self.cohort, self.feedback, self.user_ids[1]);
                self.devices[0].write(
                    "feedback_exercises",
                    feedback,
                    Some(cohort),
                    json!({
                        "direction": "given", "counterpart_user_id": pieter, "shared": shared,
                        "observation": "je liet mij uitpraten",
                    }),
                );
            }
            Operation::Sync { device, limit } => self.sync(device, limit).await?,
            Operation::Replay { device } => {
                let Some(batch) = self.last_batch[device].clone() else {
                    return Ok(());
                };
                let dev = &mut self.devices[device];
                while dev
                    .pull_page(None)
                    .await
                    .map_err(|err| TestCaseError::fail(err.to_string()))?
                {}
                let before = dev.replica();
                dev.send_batch(&batch)
                    .await
                    .map_err(|err| TestCaseError::fail(err.to_string()))?;
                while dev
                    .pull_page(None)
                    .await
                    .map_err(|err| TestCaseError::fail(err.to_string()))?
                {}
                let after = dev.replica();
                check(before == after, || {
                    "a replayed batch changed what the device holds".into()
                })?;
            }
            Operation::ToggleTrainer => {
                let path = format!("/v1/cohorts/{}/trainers", self.cohort);
                if self.model.trainer_member {
                    let path = format!(
                        "/v1/cohorts/{}/members/{}",
                        self.cohort, self.second.user_id
                    );
                    self.app.delete(&path, &self.admin.token).await.expect(204);
                } else {
                    self.app
                        .post(
                            &path,
                            Some(&self.trainer.token),
                            json!({ "user_id": self.second.user_id }),
                        )
                        .await
                        .expect(204);
                }
                self.model.trainer_member = !self.model.trainer_member;
            }
            Operation::TrainerPull { limit } => {
                let device = &mut self.second_device;
                while device
                    .pull_page(Some(limit))
                    .await
                    .map_err(|err| TestCaseError::fail(err.to_string()))?
                {}
                let mut expected = self.model.visible(None, self.feedback);
                if !self.model.trainer_member {
                    expected.values_mut().for_each(BTreeSet::clear);
                }
                let holds = held(&self.second_device);
                check(holds == expected, || {
                    format!("the second trainer holds {holds:?}, the model says {expected:?}")
                })?;
            }
        }
        Ok(())
    }

    /// Pushes the device's outbox (the model applies it first, in order), then pulls with the
    /// page limit and compares the device with the model.
    async fn sync(&mut self, device: usize, limit: usize) -> Result<(), TestCaseError> {
        let user = self.users[device];
        let outbox = self.devices[device].outbox.clone();
        let mut expected_rejected = BTreeSet::new();
        for mutation in &outbox {
            let fields = serde_json::to_value(&mutation.fields).unwrap();
            if !self.model.apply(
                user,
                &mutation.collection,
                mutation.record_id,
                mutation.delete,
                &fields,
            ) {
                expected_rejected.insert(mutation.id);
            }
        }
        let dev = &mut self.devices[device];
        dev.rejected.clear();
        dev.push()
            .await
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        if !outbox.is_empty() {
            self.last_batch[device] = Some(outbox);
        }
        let rejected: BTreeSet<Uuid> = dev.rejected.iter().map(|(m, _)| m.id).collect();
        let codes: Vec<_> = dev.rejected.iter().map(|(_, r)| r.code.clone()).collect();
        check(rejected == expected_rejected, || {
            format!("rejected {rejected:?} ({codes:?}), the model says {expected_rejected:?}")
        })?;
        check(
            dev.rejected
                .iter()
                .all(|(_, r)| r.status == MutationStatus::Rejected),
            || "status".into(),
        )?;
        while dev
            .pull_page(Some(limit))
            .await
            .map_err(|err| TestCaseError::fail(err.to_string()))?
        {}
        let holds = held(&self.devices[device]);
        let expected = self.model.visible(Some(user), self.feedback);
        check(holds == expected, || {
            format!("device {device} holds {holds:?}, the model says {expected:?}")
        })
    }

    /// Everyone syncs until nothing is left; then each device equals one that pulled from
    /// scratch, and the model.
    async fn settle(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..2 {
            for device in 0..DEVICES {
                self.sync(device, 1_000).await?;
            }
        }
        self.run(&Operation::TrainerPull { limit: 1_000 }).await?;
        for device in 0..DEVICES {
            let token = if self.users[device] == 0 {
                &self.sanne_token
            } else {
                &self.pieter_token
            };
            let mut fresh = tablet(&self.app, &self.devices[device], token).await;
            fresh
                .pull()
                .await
                .map_err(|err| TestCaseError::fail(err.to_string()))?;
            check(fresh.replica() == self.devices[device].replica(), || {
                format!("device {device} differs from a pull from scratch")
            })?;
        }
        let mut fresh = Device::new(
            &self.app.address,
            &self
                .app
                .login("tweede@veldwerk.test", "a-long-trainer-password")
                .await,
        );
        fresh
            .pull()
            .await
            .map_err(|err| TestCaseError::fail(err.to_string()))?;
        let (got, want) = (self.second_device.replica(), fresh.replica());
        check(got == want, || {
            format!(
                "the second trainer differs from a pull from scratch: {} vs {} records",
                got.len(),
                want.len()
            )
        })
    }
}

fn run_model(backend: Backend) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    if runtime
        .block_on(TestApp::spawn_with(backend, |_| {}))
        .is_none()
    {
        return; // skipped, and said so
    }
    let config = Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner =
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let strategy = proptest::collection::vec(operation(), 1..MAX_OPERATIONS);
    let result = runner.run(&strategy, |operations| {
        runtime.block_on(async {
            let app = TestApp::spawn_with(backend, |_| {})
                .await
                .expect("a database");
            let mut world = World::new(app).await;
            for operation in &operations {
                world.run(operation).await?;
            }
            world.settle().await
        })
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn random_operations_match_the_model_on_sqlite() {
    run_model(Backend::Sqlite);
}

#[test]
fn random_operations_match_the_model_on_postgres() {
    run_model(Backend::Postgres);
}
