//! The data's life (AVG/GDPR): erasure leaves nothing of a person in any table, any stored object
//! or any other device; an export holds exactly the person's data; retention purges on time and
//! only the expired cohort; the audit log records each listed action.

use std::str::FromStr;

use chrono::{Duration, NaiveDate, Utc};
use futures_util::StreamExt;
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_tests::{
    TestApp, client::Device, columns_containing, db_test, fcm_test, storage_test,
    veldwerk_server::jobs,
};

use crate::{
    attachments::{finish, sha256_hex, upload},
    fixtures::{User, demo_admin, demo_cohort, demo_trainer, other_provider},
    sync::tablet,
    sync_edges::{raw_push, sync_get},
};

/// Written into every field a participant can fill, so that a search finds any copy of it.
const MARKER: &str = "Qz7Marker";

/// Enrols a participant whose every field holds `marker`: the name, the device's name, the
/// invite's label (which a trainer writes), and a push registration.
async fn marked_participant(
    app: &TestApp,
    trainer: &User,
    cohort: &str,
    marker: &str,
) -> (Device, Value) {
    let invites = app
        .post(
            &format!("/v1/cohorts/{cohort}/invites"),
            Some(&trainer.token),
            json!({ "count": 1, "label": format!("voor {marker}") }),
        )
        .await
        .expect(201);
    let session = app
        .post(
            "/v1/auth/enrol",
            None,
            json!({
                "invite_code": invites[0]["code"],
                "display_name": format!("Sanne {marker}"),
                "device_name": format!("telefoon van {marker}"),
            }),
        )
        .await
        .expect(201);
    let device = Device::new(&app.address, &session);
    app.call(
        reqwest::Method::PUT,
        "/v1/me/push-device",
        Some(device.debug_token()),
        Some(json!({
            "token": format!("fcm-{marker}"), "platform": "android", "locale": "nl-NL",
            "time_zone": "Europe/Amsterdam", "app_version": "1.0.0",
        })),
    )
    .await
    .expect(200);
    (device, session)
}

/// Writes a record of every collection with `marker` in every text field, an attachment whose
/// name and bytes hold it, and a conflict (two devices edit one field offline) whose losing value
/// holds it. Returns the attachment's id.
async fn write_everything(
    app: &TestApp,
    phone: &mut Device,
    tablet: &mut Device,
    cohort: Uuid,
    assignment: Uuid,
    counterpart: Uuid,
    marker: &str,
) -> Uuid {
    let interview = Uuid::now_v7();
    phone.write(
        "interviews",
        interview,
        Some(cohort),
        json!({
            "name_consent": true, "status": "draft", "interviewee_role": marker,
            "interviewee_organisation": marker, "interviewee_name": marker, "place": marker,
            "questions": [{ "q": marker, "a": marker }], "notes": marker, "insights": marker,
        }),
    );
    phone.write(
        "feedback_exercises",
        Uuid::now_v7(),
        Some(cohort),
        json!({
            "direction": "given", "counterpart_user_id": counterpart, "counterpart_name": marker,
            "shared": true, "observation": marker, "effect": marker, "wish": marker,
        }),
    );
    let work = veldwerk_sync_protocol::schema::assignment_record_id(phone.user_id, assignment);
    phone.write(
        "assignment_work",
        work,
        Some(cohort),
        json!({
            "assignment_id": assignment, "done": true, "applied": marker, "reflection": marker,
        }),
    );
    let harvest =
        veldwerk_sync_protocol::schema::cohort_record_id("harvests", phone.user_id, cohort);
    phone.write(
        "harvests",
        harvest,
        Some(cohort),
        json!({
            "outline": marker, "material": { "slides": marker }, "status": "draft",
        }),
    );
    let profile = veldwerk_sync_protocol::schema::user_record_id("profiles", phone.user_id);
    phone.write(
        "profiles",
        profile,
        Some(cohort),
        json!({ "about": marker, "insights_scores": { "note": marker } }),
    );
    phone.sync().await.unwrap();
    assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);

    // The same field edited on both devices without seeing each other: one value loses and is
    // kept as a conflict for the owner.
    tablet.pull().await.unwrap();
    phone.write(
        "interviews",
        interview,
        None,
        json!({ "notes": format!("telefoon {marker}") }),
    );
    tablet.write(
        "interviews",
        interview,
        None,
        json!({ "notes": format!("tablet {marker}") }),
    );
    phone.push().await.unwrap();
    tablet.push().await.unwrap();

    let bytes = format!("{marker} {}", "x".repeat(70_000)).into_bytes();
    let attachment = Uuid::now_v7();
    phone.write(
        "attachments",
        attachment,
        Some(cohort),
        json!({
            "parent_collection": "interviews", "parent_id": interview,
            "file_name": format!("{marker}.jpg"), "content_type": "image/jpeg",
            "size": bytes.len(), "sha256": sha256_hex(&bytes),
        }),
    );
    phone.sync().await.unwrap();
    assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);
    upload(app, phone.debug_token(), attachment, &bytes, 32_000).await;
    finish(app, phone.debug_token(), attachment)
        .await
        .expect(200);
    attachment
}

/// A fresh device of the demo trainer, fully pulled.
async fn trainer_device(app: &TestApp) -> Device {
    let session = app
        .login("trainer@veldwerk.test", "demo-trainer-wachtwoord")
        .await;
    let mut device = Device::new(&app.address, &session);
    device.pull().await.unwrap();
    device
}

/// Whether a device's copy holds `needle` anywhere.
fn holds(device: &Device, needle: &str) -> bool {
    format!("{:?}", device.server).contains(needle)
}

/// Keys of stored objects (blobs and parts) that belong to an attachment.
async fn objects_of(app: &TestApp, attachment: Uuid) -> Vec<String> {
    let keys: Vec<String> = app
        .services
        .blobs()
        .list("")
        .map(|key| key.unwrap())
        .collect()
        .await;
    keys.into_iter()
        .filter(|key| key.contains(&attachment.simple().to_string()))
        .collect()
}

/// The first between-day assignment of a cohort.
async fn first_assignment(app: &TestApp, trainer: &User, cohort: Uuid) -> Uuid {
    let detail = app
        .get(&format!("/v1/cohorts/{cohort}"), &trainer.token)
        .await
        .expect(200);
    Uuid::from_str(detail["assignments"][0]["id"].as_str().unwrap()).unwrap()
}

storage_test!(async fn an_erased_participant_is_in_no_table_no_stored_object_and_on_no_other_device(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let cohort_text = demo_cohort(&app, &trainer).await;
    let cohort = Uuid::from_str(&cohort_text).unwrap();
    let assignment = first_assignment(&app, &trainer, cohort).await;

    // A fellow participant, who gets Sanne's shared feedback and writes feedback naming her.
    let (mut fellow, _) = marked_participant(&app, &trainer, &cohort_text, "fellow").await;
    let (mut phone, session) = marked_participant(&app, &trainer, &cohort_text, MARKER).await;
    let mut second = tablet(&app, &phone, phone.debug_token()).await;
    let attachment =
        write_everything(&app, &mut phone, &mut second, cohort, assignment, fellow.user_id, MARKER).await;
    let named = Uuid::now_v7();
    fellow.write("feedback_exercises", named, Some(cohort), json!({
        "direction": "received", "counterpart_user_id": phone.user_id,
        "counterpart_name": format!("Sanne {MARKER}"), "shared": true, "observation": "helder verhaal",
    }));
    fellow.sync().await.unwrap();
    assert!(fellow.rejected.is_empty(), "{:?}", fellow.rejected);
    // As its counterpart, she reacts to it: her words in the fellow's record.
    phone.pull().await.unwrap();
    phone.write("feedback_exercises", named, None, json!({ "reaction": format!("dank je, {MARKER}") }));
    phone.sync().await.unwrap();
    assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);
    fellow.pull().await.unwrap();
    assert!(fellow.view("feedback_exercises", named).unwrap()["reaction"].as_str().unwrap().contains(MARKER));
    let mut trainer_phone = trainer_device(&app).await;

    // The search finds her everywhere she wrote, so its silence afterwards means something.
    let before = columns_containing(app.database_url(), MARKER).await;
    for column in [
        "users.display_name", "devices.name", "invites.label", "push_devices.token",
        "interviews.notes", "interviews.conflicts", "interviews.questions",
        "feedback_exercises.counterpart_name", "feedback_exercises.reaction",
        "assignment_work.reflection", "harvests.outline",
        "profiles.about", "attachments.file_name",
    ] {
        assert!(before.contains(&column.to_owned()), "{column} not found before: {before:?}");
    }
    assert!(holds(&trainer_phone, MARKER) && holds(&fellow, MARKER));
    assert!(!objects_of(&app, attachment).await.is_empty());

    let outsider = other_provider(&app).await;
    let path = format!("/v1/participants/{}", phone.user_id);
    app.delete(&path, &outsider.token).await.expect_error(404, "not_found");
    app.delete(&path, &trainer.token).await.expect_error(403, "forbidden");
    app.delete(&path, &admin.token).await.expect(204);
    // Erased is gone: a second erasure finds nobody.
    app.delete(&path, &admin.token).await.expect_error(404, "not_found");

    let after = columns_containing(app.database_url(), MARKER).await;
    assert!(after.is_empty(), "the participant is still in {after:?}");
    assert_eq!(objects_of(&app, attachment).await, Vec::<String>::new());

    // Every other device drops what it held of her at its next pull; a fresh one never gets it.
    trainer_phone.pull().await.unwrap();
    fellow.pull().await.unwrap();
    assert!(!holds(&trainer_phone, MARKER), "the trainer's device still holds her data");
    assert!(!holds(&fellow, MARKER), "the fellow participant's device still holds her data");
    assert!(!holds(&trainer_device(&app).await, MARKER));
    // The fellow's own feedback stays, without her name.
    let own = fellow.ids("feedback_exercises");
    assert_eq!(own.len(), 1);
    let kept = fellow.view("feedback_exercises", own[0]).unwrap();
    assert_eq!(kept["observation"], "helder verhaal");
    assert!(!kept.contains_key("counterpart_name") && !kept.contains_key("counterpart_user_id"));
    assert!(!kept.contains_key("reaction"), "{kept:?}");

    // Her devices are told to wipe, wherever they knock.
    for token in [phone.debug_token(), second.debug_token()] {
        sync_get(&app, token, "/v1/sync/pull").await.expect_error(401, "device_wiped");
        raw_push(&app, token, &json!({ "mutations": [] })).await.expect_error(401, "device_wiped");
        app.get("/v1/me", token).await.expect_error(401, "device_wiped");
    }
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": session["refresh_token"] }))
        .await
        .expect_error(401, "device_wiped");
    let members = app.get(&format!("/v1/cohorts/{cohort}/members"), &trainer.token).await.expect(200);
    assert!(!members.to_string().contains(&phone.user_id.to_string()), "{members}");

    // The audit log says it happened, by whom, with counts only.
    let log = app
        .get(&format!("/v1/audit-log?person={}", phone.user_id), &admin.token)
        .await
        .expect(200);
    let erased = log.as_array().unwrap().iter().find(|e| e["action"] == "participant.erased").unwrap();
    assert_eq!(erased["actor_id"], json!(admin.user_id));
    assert_eq!(erased["details"]["by"], "admin");
    assert_eq!(erased["details"]["files"], 1);
    assert_eq!(erased["details"]["mentions"], 1);
});

db_test!(async fn a_participant_deletes_their_own_account_from_the_app(app) {
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let (mut phone, _) = marked_participant(&app, &trainer, &cohort, MARKER).await;
    let second = tablet(&app, &phone, phone.debug_token()).await;
    phone.write("interviews", Uuid::now_v7(), Some(Uuid::from_str(&cohort).unwrap()), json!({
        "name_consent": false, "status": "draft", "notes": MARKER,
    }));
    phone.sync().await.unwrap();

    // Staff cannot delete themselves this way (an admin removes staff).
    app.delete("/v1/me", &trainer.token).await.expect_error(403, "forbidden");

    app.delete("/v1/me", phone.debug_token()).await.expect(204);
    assert_eq!(columns_containing(app.database_url(), MARKER).await, Vec::<String>::new());
    app.get("/v1/me", phone.debug_token()).await.expect_error(401, "device_wiped");
    sync_get(&app, second.debug_token(), "/v1/sync/pull").await.expect_error(401, "device_wiped");
    let admin = demo_admin(&app).await;
    let log = app.get("/v1/audit-log", &admin.token).await.expect(200);
    let erased = log.as_array().unwrap().iter().find(|e| e["action"] == "participant.erased").unwrap();
    assert_eq!((erased["details"]["by"].clone(), erased["actor_id"].clone()), (json!("self"), json!(phone.user_id)));
});

/// Extracts a tar archive with the system's `tar` (an independent reader) and returns the
/// folder.
fn untar(bytes: &[u8]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("export.tar");
    std::fs::write(&archive, bytes).unwrap();
    let status = std::process::Command::new("tar")
        .arg("-xf")
        .arg(&archive)
        .arg("-C")
        .arg(dir.path())
        .status()
        .expect("tar runs");
    assert!(status.success(), "tar could not read the archive");
    std::fs::remove_file(archive).unwrap();
    dir
}

/// Every file of an extracted export, by its path under `veldwerk-export/`.
fn files_of(dir: &std::path::Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    let root = dir.join("veldwerk-export");
    let mut files = std::collections::BTreeMap::new();
    let mut pending = vec![root.clone()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                let name = path
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                files.insert(name, std::fs::read(&path).unwrap());
            }
        }
    }
    files
}

async fn export(
    app: &TestApp,
    path: &str,
    token: &str,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let response = app
        .client
        .get(format!("{}{path}", app.address))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

storage_test!(async fn an_export_holds_exactly_the_participants_data(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let cohort_text = demo_cohort(&app, &trainer).await;
    let cohort = Uuid::from_str(&cohort_text).unwrap();
    let assignment = first_assignment(&app, &trainer, cohort).await;
    let (mut fellow, _) = marked_participant(&app, &trainer, &cohort_text, "Fellowmark").await;
    let (mut phone, _) = marked_participant(&app, &trainer, &cohort_text, MARKER).await;
    let mut second = tablet(&app, &phone, phone.debug_token()).await;
    let attachment =
        write_everything(&app, &mut phone, &mut second, cohort, assignment, fellow.user_id, MARKER).await;
    // Shared with her: in her export. Not shared, or about someone else: not.
    let shared = Uuid::now_v7();
    fellow.write("feedback_exercises", shared, Some(cohort), json!({
        "direction": "given", "counterpart_user_id": phone.user_id, "shared": true, "observation": "gedeeld met Sanne",
    }));
    fellow.write("feedback_exercises", Uuid::now_v7(), Some(cohort), json!({
        "direction": "given", "counterpart_user_id": phone.user_id, "shared": false, "observation": "Fellowmark privé",
    }));
    fellow.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft", "notes": "Fellowmark eigen" }));
    fellow.sync().await.unwrap();
    let announcement = app
        .post(&format!("/v1/cohorts/{cohort}/announcements"), Some(&trainer.token),
            json!({ "title": "Dag 2", "body": "Iedereen om 10:00" }))
        .await
        .expect(201);
    app.post(&format!("/v1/cohorts/{cohort}/announcements"), Some(&trainer.token),
        json!({ "title": "Alleen voor de ander", "body": "Fellowmark bericht", "recipient_ids": [fellow.user_id] }))
        .await
        .expect(201);

    // More interviews than the export reads in one page (200): none may fall between pages.
    for n in 0..250 {
        phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({
            "name_consent": false, "status": "draft", "notes": format!("nummer {n}"),
        }));
    }
    phone.sync().await.unwrap();
    assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);

    let (status, headers, bytes) = export(&app, "/v1/me/export", phone.debug_token()).await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/x-tar");
    assert!(headers["content-disposition"].to_str().unwrap().contains(&phone.user_id.to_string()));
    assert!(!String::from_utf8_lossy(&bytes).contains("Fellowmark"), "another participant's unshared data is in the export");
    let dir = untar(&bytes);
    let files = files_of(dir.path());
    let json_of = |name: &str| -> Value {
        serde_json::from_slice(files.get(name).unwrap_or_else(|| panic!("{name} missing: {:?}", files.keys()))).unwrap()
    };
    assert_eq!(json_of("manifest.json")["format"], "veldwerk-export");
    let account = json_of("account.json");
    assert_eq!(account["display_name"], format!("Sanne {MARKER}"));
    assert_eq!(account["devices"].as_array().unwrap().len(), 2);
    assert_eq!(account["devices"][1]["push"]["platform"], "android", "{account}");
    let record_files: Vec<&String> = files.keys().filter(|name| name.starts_with("records/")).collect();
    // One record per collection she wrote, and the attachment's metadata.
    let collections: std::collections::BTreeSet<&str> =
        record_files.iter().map(|name| name.split('/').nth(1).unwrap()).collect();
    assert_eq!(
        collections.into_iter().collect::<Vec<_>>(),
        ["assignment_work", "attachments", "feedback_exercises", "harvests", "interviews", "profiles"]
    );
    let interview_files: Vec<&&String> = record_files.iter().filter(|n| n.starts_with("records/interviews/")).collect();
    assert_eq!(interview_files.len(), 251, "every interview, across the export's pages");
    let interview_file = interview_files
        .iter()
        .find(|n| json_of(n)["fields"]["insights"] == MARKER)
        .unwrap();
    let interview = json_of(interview_file);
    assert_eq!(interview["fields"]["insights"], MARKER);
    assert_eq!(interview["conflicts"].as_array().unwrap().len(), 1, "the kept conflict is hers too");
    assert_eq!(
        files.keys().filter(|n| n.starts_with("shared-with-me/")).collect::<Vec<_>>(),
        [&format!("shared-with-me/feedback_exercises/{shared}.json")]
    );
    assert_eq!(
        files.keys().filter(|n| n.starts_with("announcements/")).collect::<Vec<_>>(),
        [&format!("announcements/{}.json", announcement["id"].as_str().unwrap())]
    );
    let shared_file = json_of(&format!("shared-with-me/feedback_exercises/{shared}.json"));
    assert_eq!(shared_file["fields"]["observation"], "gedeeld met Sanne");
    let stored = &files[&format!("attachments/{attachment}")];
    assert!(stored.starts_with(MARKER.as_bytes()) && stored.len() == MARKER.len() + 70_001);

    // An admin gets the same files for an access request; nobody else gets any.
    let (status, _, admin_bytes) = export(&app, &format!("/v1/participants/{}/export", phone.user_id), &admin.token).await;
    assert_eq!(status, 200);
    let admin_dir = untar(&admin_bytes);
    let admin_files = files_of(admin_dir.path());
    assert_eq!(admin_files.keys().collect::<Vec<_>>(), files.keys().collect::<Vec<_>>());
    let path = format!("/v1/participants/{}/export", phone.user_id);
    app.get(&path, &trainer.token).await.expect_error(403, "forbidden");
    app.get(&path, fellow.debug_token()).await.expect_error(403, "forbidden");
    let outsider = other_provider(&app).await;
    app.get(&path, &outsider.token).await.expect_error(404, "not_found");
    let log = app.get(&format!("/v1/audit-log?person={}", phone.user_id), &admin.token).await.expect(200);
    let exports: Vec<&Value> = log.as_array().unwrap().iter().filter(|e| e["action"] == "data.exported").collect();
    assert_eq!(exports.len(), 2, "{log}");
});

/// Creates a cohort in a new organisation whose Day 6 is on `last`; returns (organisation,
/// cohort).
async fn cohort_ending(
    app: &TestApp,
    admin: &User,
    trainer: &User,
    name: &str,
    last: NaiveDate,
) -> (String, Uuid) {
    let (organisation, cohort) = crate::fixtures::organisation_with_cohort_from(
        app,
        admin,
        trainer,
        name,
        last - Duration::weeks(5),
    )
    .await;
    (organisation, Uuid::from_str(&cohort).unwrap())
}

db_test!(async fn retention_warns_then_purges_only_the_expired_cohort(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let day6 = Utc::now().date_naive() + Duration::days(60);
    // Purged a year after Day 6; warned 14 days before; the other two are not due.
    let (_, expired) = cohort_ending(&app, &admin, &trainer, "Verlopen", day6).await;
    let (_, warned) = cohort_ending(&app, &admin, &trainer, "Bijna", day6 + Duration::days(7)).await;
    let (longer_org, longer) = cohort_ending(&app, &admin, &trainer, "Langer", day6).await;
    let (_, running) = cohort_ending(&app, &admin, &trainer, "Lopend", day6 + Duration::days(90)).await;
    let reply = app.call(reqwest::Method::PUT, &format!("/v1/organisations/{longer_org}/retention"),
        Some(&admin.token), Some(json!({ "months": 24 }))).await.expect(200);
    assert_eq!((reply["months"].clone(), reply["is_default"].clone()), (json!(24), json!(false)));
    app.call(reqwest::Method::PUT, &format!("/v1/organisations/{longer_org}/retention"),
        Some(&trainer.token), Some(json!({ "months": 1 }))).await.expect_error(403, "forbidden");
    app.call(reqwest::Method::PUT, &format!("/v1/organisations/{longer_org}/retention"),
        Some(&admin.token), Some(json!({ "months": 0 }))).await.expect_error(400, "invalid_body");

    let mut phones = Vec::new();
    for cohort in [expired, warned, longer, running] {
        let (mut phone, _) = marked_participant(&app, &trainer, &cohort.to_string(), &format!("M{}", cohort.simple())).await;
        phone.write("interviews", Uuid::now_v7(), Some(cohort), json!({
            "name_consent": false, "status": "draft", "notes": format!("M{}", cohort.simple()),
        }));
        phone.sync().await.unwrap();
        assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);
        phones.push(phone);
    }
    // Nothing is due today.
    let report = jobs::retention::run_once(&app.services, Utc::now()).await.unwrap();
    assert!(report.warned.is_empty() && report.purged.is_empty(), "{report:?}");

    // Two days after a year after the first cohort's Day 6 (a calendar year: 365 or 366 days).
    let later = (day6.checked_add_months(chrono::Months::new(12)).unwrap() + Duration::days(2))
        .and_hms_opt(12, 0, 0)
        .unwrap()
        .and_utc();
    let report = jobs::retention::run_once(&app.services, later).await.unwrap();
    assert_eq!((report.purged.clone(), report.warned.clone()), (vec![expired], vec![warned]), "{report:?}");
    assert_eq!(report.participants, 1);
    // The cohort says when its data goes, and that its trainers were told (for the console).
    let shown = app.get(&format!("/v1/cohorts/{warned}"), &trainer.token).await.expect(200);
    let purge_at: chrono::DateTime<Utc> = shown["retention"]["purge_at"].as_str().unwrap().parse().unwrap();
    assert_eq!(purge_at.date_naive(), (day6 + Duration::days(7)).checked_add_months(chrono::Months::new(12)).unwrap());
    assert!(shown["retention"]["warned_at"].is_string() && shown["retention"]["purged_at"].is_null(), "{shown}");
    let shown = app.get(&format!("/v1/cohorts/{expired}"), &trainer.token).await.expect(200);
    assert!(shown["retention"]["purged_at"].is_string(), "{shown}");
    // Run again (another replica, the next hour): nothing more.
    let again = jobs::retention::run_once(&app.services, later).await.unwrap();
    assert!(again.warned.is_empty() && again.purged.is_empty(), "{again:?}");

    let expired_marker = format!("M{}", expired.simple());
    assert_eq!(columns_containing(app.database_url(), &expired_marker).await, Vec::<String>::new());
    sync_get(&app, phones[0].debug_token(), "/v1/sync/pull").await.expect_error(401, "device_wiped");
    for (phone, cohort) in phones.iter_mut().zip([expired, warned, longer, running]).skip(1) {
        phone.pull().await.unwrap();
        let marker = format!("M{}", cohort.simple());
        assert!(holds(phone, &marker), "{cohort} lost its data");
        assert!(!columns_containing(app.database_url(), &marker).await.is_empty());
    }
    // The trainers of the warned cohort get a push (once), and the audit log tells both.
    let log = app.get("/v1/audit-log", &admin.token).await.expect(200);
    let actions: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"].as_str().unwrap().starts_with("retention."))
        .map(|e| (e["action"].as_str().unwrap().to_owned(), e["cohort_id"].as_str().unwrap_or_default().to_owned()))
        .collect();
    assert!(actions.contains(&("retention.warned".into(), warned.to_string())), "{actions:?}");
    assert!(actions.contains(&("retention.cohort_purged".into(), expired.to_string())), "{actions:?}");
    assert_eq!(actions.iter().filter(|(a, _)| a == "retention.warned").count(), 1);

    // The audit log has its own retention (730 days by default): 800 days on, every entry so
    // far is past it; what is left is what that run itself recorded.
    let last_run = Utc::now();
    let much_later = last_run + Duration::days(800);
    let report = jobs::retention::run_once(&app.services, much_later).await.unwrap();
    assert!(report.audit_entries >= actions.len() as u64, "{report:?}");
    let left = app.get("/v1/audit-log?limit=500", &admin.token).await.expect(200);
    for entry in left.as_array().unwrap() {
        let at: chrono::DateTime<Utc> = entry["at"].as_str().unwrap().parse().unwrap();
        assert!(at >= last_run, "an entry older than the audit retention is left: {entry}");
    }
});

db_test!(async fn the_audit_log_records_staff_access_admin_actions_and_security_events(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let started = Utc::now() - Duration::seconds(1);

    let created = app.post("/v1/users", Some(&admin.token), json!({
        "role": "trainer", "email": "nieuw@veldwerk.test", "display_name": "Nieuwe trainer",
        "password": "a-long-trainer-password",
    })).await.expect(201);
    let new_trainer = created["id"].as_str().unwrap().to_owned();
    app.post(&format!("/v1/cohorts/{cohort}/trainers"), Some(&admin.token), json!({ "user_id": new_trainer }))
        .await
        .expect(204);
    app.delete(&format!("/v1/cohorts/{cohort}/members/{new_trainer}"), &admin.token).await.expect(204);
    app.patch(&format!("/v1/cohorts/{cohort}/schedule"), &trainer.token, json!({
        "days": [{ "day_number": 1, "location": "Stadhuis" }],
    })).await.expect(200);
    app.call(reqwest::Method::PUT, &format!("/v1/cohorts/{cohort}/reminder-rules"), Some(&trainer.token),
        Some(json!({ "rules": [{ "applies_to": "between_day", "days_before": 2, "at": "09:00:00" }] })))
        .await
        .expect(200);
    // A trainer's fresh device pulls the cohort's records.
    trainer_device(&app).await;
    // A participant revokes a lost phone; a stolen refresh token is used twice.
    let (phone, session) = marked_participant(&app, &trainer, &cohort, "audit").await;
    let second = tablet(&app, &phone, phone.debug_token()).await;
    app.delete(&format!("/v1/me/devices/{}?wipe=true", second.device_id), phone.debug_token()).await.expect(204);
    let first = app.post("/v1/auth/refresh", None, json!({ "refresh_token": session["refresh_token"] })).await.expect(200);
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": first["refresh_token"] })).await.expect(200);
    app.post("/v1/auth/refresh", None, json!({ "refresh_token": session["refresh_token"] }))
        .await
        .expect_error(401, "refresh_token_reused");

    let log = app.get(&format!("/v1/audit-log?from={}", started.to_rfc3339().replace('+', "%2B")), &admin.token).await.expect(200);
    let actions: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    for action in [
        "staff.created", "cohort.member_added", "cohort.member_removed", "cohort.schedule_changed",
        "reminders.rules_changed", "cohort.records_synced", "security.device_revoked",
        "security.refresh_token_reused",
    ] {
        assert!(actions.contains(&action), "{action} missing from {actions:?}");
    }
    // Newest first, and filtered by person and time.
    let times: Vec<&str> = log.as_array().unwrap().iter().map(|e| e["at"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    let about = app.get(&format!("/v1/audit-log?person={}", phone.user_id), &admin.token).await.expect(200);
    let about: Vec<&str> = about.as_array().unwrap().iter().map(|e| e["action"].as_str().unwrap()).collect();
    assert_eq!(about, ["security.refresh_token_reused", "security.device_revoked"]);
    let future = (Utc::now() + Duration::hours(1)).to_rfc3339().replace('+', "%2B");
    assert_eq!(app.get(&format!("/v1/audit-log?from={future}"), &admin.token).await.expect(200), json!([]));
    let page = app.get("/v1/audit-log?limit=2", &admin.token).await.expect(200);
    let next = app.get(&format!("/v1/audit-log?limit=2&before={}", page[1]["id"].as_str().unwrap()), &admin.token).await.expect(200);
    assert_eq!(next[0]["id"], log[2]["id"], "pages follow on");

    // Admins only, and only their own provider's.
    app.get("/v1/audit-log", &trainer.token).await.expect_error(403, "forbidden");
    let participant = crate::fixtures::participant(&app, &trainer, &cohort, "Pieter").await;
    app.get("/v1/audit-log", &participant.token).await.expect_error(403, "forbidden");
    let outsider = other_provider(&app).await;
    assert_eq!(app.get("/v1/audit-log", &outsider.token).await.expect(200), json!([]));
});

db_test!(async fn pushes_racing_an_erasure_never_write_the_erased_data_back(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let cohort_text = demo_cohort(&app, &trainer).await;
    let cohort = Uuid::from_str(&cohort_text).unwrap();
    let (phone, _) = marked_participant(&app, &trainer, &cohort_text, MARKER).await;
    let user_id = phone.user_id;
    let second = tablet(&app, &phone, phone.debug_token()).await;
    // Both devices push as fast as they can, each push authenticated before its turn to write,
    // until the erasure shuts them out.
    let mut pushers = Vec::new();
    for mut device in [phone, second] {
        pushers.push(tokio::spawn(async move {
            let mut applied = 0;
            loop {
                device.write("interviews", Uuid::now_v7(), Some(cohort), json!({
                    "name_consent": false, "status": "draft", "notes": MARKER,
                }));
                if device.push().await.is_err() {
                    return applied;
                }
                applied += 1;
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    app.delete(&format!("/v1/participants/{user_id}"), &admin.token).await.expect(204);
    let mut applied = 0;
    for pusher in pushers {
        applied += tokio::time::timeout(std::time::Duration::from_secs(30), pusher)
            .await
            .expect("the pushes stop once the devices are wiped")
            .unwrap();
    }
    assert!(applied > 2, "the devices pushed before the erasure ({applied})");
    assert_eq!(columns_containing(app.database_url(), MARKER).await, Vec::<String>::new());
});

fcm_test!(async fn trainers_are_pushed_once_before_their_cohort_is_purged(app, fcm) with |config| {
    config.privacy.retention_warning_days = 60;
}; {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let (organisation, cohort) =
        cohort_ending(&app, &admin, &trainer, "Kort", Utc::now().date_naive() + Duration::days(7)).await;
    app.call(reqwest::Method::PUT, &format!("/v1/organisations/{organisation}/retention"),
        Some(&admin.token), Some(json!({ "months": 1 }))).await.expect(200);
    let session = app.login("trainer@veldwerk.test", "demo-trainer-wachtwoord").await;
    let laptop = Device::new(&app.address, &session);
    app.call(reqwest::Method::PUT, "/v1/me/push-device", Some(laptop.debug_token()), Some(json!({
        "token": "tok-trainer", "platform": "android", "locale": "en-GB",
        "time_zone": "Europe/Amsterdam", "app_version": "1.0.0",
    }))).await.expect(200);

    // Purged about 38 days from now; warned 60 days ahead, so now, and only once.
    for _ in 0..2 {
        jobs::retention::run_once(&app.services, Utc::now()).await.unwrap();
        jobs::push::run_once(&app.services, "worker-a").await.unwrap();
    }
    let sent = fcm.attempts_to("tok-trainer");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let message = &sent[0];
    assert_eq!(message["data"]["kind"], "retention_warning");
    assert_eq!(message["data"]["cohort_id"], cohort.to_string());
    assert_eq!(message["notification"]["title"], "Retention period ends soon");
});

db_test!(async fn an_admin_revokes_and_wipes_a_participants_lost_phone(app) {
    let admin = demo_admin(&app).await;
    let trainer = demo_trainer(&app).await;
    let cohort = demo_cohort(&app, &trainer).await;
    let (phone, _) = marked_participant(&app, &trainer, &cohort, "verloren").await;
    let second = tablet(&app, &phone, phone.debug_token()).await;
    let other = crate::fixtures::participant(&app, &trainer, &cohort, "Pieter").await;
    let devices_path = format!("/v1/participants/{}/devices", phone.user_id);
    let devices = app.get(&devices_path, &admin.token).await.expect(200);
    assert_eq!(devices.as_array().unwrap().len(), 2);
    app.get(&devices_path, &trainer.token).await.expect_error(403, "forbidden");

    let lost = format!("{devices_path}/{}?wipe=true", phone.device_id);
    app.delete(&lost, &trainer.token).await.expect_error(403, "forbidden");
    let outsider = other_provider(&app).await;
    app.delete(&lost, &outsider.token).await.expect_error(404, "not_found");
    // Another participant's device under this participant's id: not found.
    app.delete(&format!("/v1/participants/{}/devices/{}", phone.user_id, other.device_id), &admin.token)
        .await
        .expect_error(404, "not_found");
    app.get("/v1/me", &other.token).await.expect(200);

    app.delete(&lost, &admin.token).await.expect(204);
    app.get("/v1/me", phone.debug_token()).await.expect_error(401, "device_wiped");
    sync_get(&app, phone.debug_token(), "/v1/sync/pull").await.expect_error(401, "device_wiped");
    // Only that phone: the participant's tablet goes on.
    app.get("/v1/me", second.debug_token()).await.expect(200);
    let log = app.get(&format!("/v1/audit-log?person={}", phone.user_id), &admin.token).await.expect(200);
    let revoked = &log[0];
    assert_eq!(revoked["action"], "security.device_revoked");
    assert_eq!(revoked["actor_id"], json!(admin.user_id));
    assert_eq!(revoked["details"]["wipe"], true);
});
