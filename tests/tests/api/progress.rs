//! What trainers follow between the days, through the API: the progress view (assignments,
//! interviews per stretch, harvest), sync health as devices report it with each pull, a
//! participant's work (audited), and the nudge with its once-a-day and quiet-hours rules.

use chrono::{Duration, NaiveDate, Timelike, Utc};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_server::jobs::push::run_once;
use veldwerk_sync_protocol::schema::{assignment_record_id, cohort_record_id};
use veldwerk_tests::{TestApp, client::Device, db_test};

use crate::{
    fixtures::{demo_admin, invite_code, new_trainer, participant},
    sync::{phone, tablet},
};

/// The row of one participant in a cohort's progress.
pub(crate) async fn progress_of(
    app: &TestApp,
    token: &str,
    cohort: Uuid,
    user: Uuid,
) -> (Value, Value) {
    let progress = app
        .get(&format!("/v1/cohorts/{cohort}/progress"), token)
        .await
        .expect(200);
    let row = progress["participants"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["user_id"] == user.to_string())
        .cloned()
        .unwrap_or_else(|| panic!("{user} is not in the progress view: {progress}"));
    (progress, row)
}

/// The progress of one assignment in a participant's row.
fn on_assignment<'a>(progress: &Value, row: &'a Value, assignment: &str) -> &'a Value {
    let position = progress["stretches"]
        .as_array()
        .unwrap()
        .iter()
        .position(|s| s["assignment_id"] == assignment)
        .unwrap();
    let cell = &row["assignments"][position];
    assert_eq!(cell["assignment_id"], assignment);
    cell
}

db_test!(async fn the_progress_view_counts_each_participants_work_by_stretch(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let pieter = participant(&app, &trainer, &cohort.to_string(), "Pieter").await;
    let progress = app.get(&format!("/v1/cohorts/{cohort}/progress"), &trainer.token).await.expect(200);
    let stretches = progress["stretches"].as_array().unwrap().clone();
    assert!(stretches.iter().all(|s| s["kind"] != "harvest_presentation"), "the harvest has its own column");
    let first = stretches.iter().find(|s| s["after_day"] == 1).unwrap().clone();
    let second = stretches.iter().find(|s| s["after_day"] == 2).unwrap().clone();
    let first_id: Uuid = first["assignment_id"].as_str().unwrap().parse().unwrap();
    let day = |s: &Value, key: &str| s[key].as_str().unwrap().parse::<NaiveDate>().unwrap();

    // Sanne: the first assignment done with what she applied but no reflection (blank counts as
    // nothing); an interview linked to it; one held on the last day of the second stretch (the
    // edge that counts) and one on the day the second stretch ends (the next stretch's); one
    // deleted; a harvest in draft with an outline.
    let work = assignment_record_id(sanne.user_id, first_id);
    sanne.write("assignment_work", work, Some(cohort), json!({ "assignment_id": first_id, "done": true, "applied": "Buurtgesprek gevoerd", "reflection": "   " }));
    let linked = Uuid::now_v7();
    sanne.write("interviews", linked, Some(cohort), json!({ "name_consent": false, "status": "done", "assignment_id": first_id, "interviewed_on": day(&second, "from").to_string() }));
    let last_day = day(&second, "until") - Duration::days(1);
    sanne.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft", "interviewed_on": last_day.to_string() }));
    sanne.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft", "interviewed_on": day(&second, "until").to_string() }));
    let gone = Uuid::now_v7();
    sanne.write("interviews", gone, Some(cohort), json!({ "name_consent": false, "status": "draft", "interviewed_on": last_day.to_string() }));
    let harvest = cohort_record_id("harvests", sanne.user_id, cohort);
    sanne.write("harvests", harvest, Some(cohort), json!({ "status": "draft", "outline": "Drie lessen uit de wijk" }));
    sanne.sync().await.unwrap();
    sanne.delete("interviews", gone);
    sanne.sync().await.unwrap();
    assert!(sanne.rejected.is_empty(), "{:?}", sanne.rejected);

    let (progress, row) = progress_of(&app, &trainer.token, cohort, sanne.user_id).await;
    let cell = on_assignment(&progress, &row, &first_id.to_string());
    assert_eq!((cell["done"].clone(), cell["applied"].clone(), cell["reflection"].clone()), (json!(true), json!(true), json!(false)));
    assert_eq!(cell["interviews"], 1, "the linked interview counts for its assignment's stretch, not its date's");
    let cell = on_assignment(&progress, &row, second["assignment_id"].as_str().unwrap());
    assert_eq!(cell["interviews"], 1, "held on the stretch's last day counts; on the next day, or deleted, does not");
    assert_eq!(cell["done"], false);
    assert_eq!(row["harvest"], json!({ "status": "draft", "outline_written": true, "attachments": 0 }));

    // Pieter has done nothing; the view says so rather than leaving him out.
    let pieter_id: Uuid = pieter.user_id.parse().unwrap();
    let (progress, row) = progress_of(&app, &trainer.token, cohort, pieter_id).await;
    assert!(row["assignments"].as_array().unwrap().iter().all(|a| a["done"] == false && a["interviews"] == 0));
    assert_eq!(row["harvest"], json!({ "outline_written": false, "attachments": 0 }));
    assert_eq!(row["assignments"].as_array().unwrap().len(), progress["stretches"].as_array().unwrap().len());

    // Neither a participant nor a trainer of another cohort gets it.
    app.get(&format!("/v1/cohorts/{cohort}/progress"), sanne.debug_token()).await.expect_error(403, "forbidden");
    let admin = demo_admin(&app).await;
    let outsider = new_trainer(&app, &admin, "elders@veldwerk.test").await;
    app.get(&format!("/v1/cohorts/{cohort}/progress"), &outsider.token).await.expect_error(404, "not_found");
    // The demo admin sees it.
    progress_of(&app, &admin.token, cohort, sanne.user_id).await;
});

db_test!(async fn devices_report_their_outbox_with_each_pull_and_the_trainer_sees_it(app) {
    let (mut phone_device, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone_device.debug_token().to_owned();
    let mut tablet_device = tablet(&app, &phone_device, &token).await;
    let (_, row) = progress_of(&app, &trainer.token, cohort, phone_device.user_id).await;
    let devices = row["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    assert!(devices.iter().all(|d| d.get("last_sync_at").is_none()), "nobody synced yet: {row}");
    assert_eq!(row["push_reachable"], false);

    // The phone records two interviews offline and pulls before it pushes (as an app does when
    // a push fails): it says two changes wait, since the first.
    phone_device.app_version = "1.4.2".into();
    phone_device.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft" }));
    let written = Utc::now();
    phone_device.write("interviews", Uuid::now_v7(), Some(cohort), json!({ "name_consent": false, "status": "draft" }));
    phone_device.pull().await.unwrap();
    tablet_device.sync().await.unwrap();
    let (_, row) = progress_of(&app, &trainer.token, cohort, phone_device.user_id).await;
    let phone_health = row["devices"].as_array().unwrap().iter().find(|d| d["user_device_id"] == phone_device.device_id.to_string()).unwrap().clone();
    assert_eq!(phone_health["outbox_pending"], 2, "{phone_health}");
    assert_eq!(phone_health["app_version"], "1.4.2");
    let oldest: chrono::DateTime<Utc> = phone_health["outbox_oldest_at"].as_str().unwrap().parse().unwrap();
    assert!((oldest - written).num_seconds().abs() < 5, "{oldest} vs {written}");
    let synced: chrono::DateTime<Utc> = phone_health["last_sync_at"].as_str().unwrap().parse().unwrap();
    assert!((Utc::now() - synced).num_seconds() < 60);
    let tablet_health = row["devices"].as_array().unwrap().iter().find(|d| d["user_device_id"] == tablet_device.device_id.to_string()).unwrap().clone();
    assert_eq!(tablet_health["outbox_pending"], 0);
    assert!(tablet_health.get("outbox_oldest_at").is_none());

    // Once it pushes, the next pull (within the same minute) says the outbox is empty: a changed
    // report is written at once.
    phone_device.sync().await.unwrap();
    let (_, row) = progress_of(&app, &trainer.token, cohort, phone_device.user_id).await;
    let phone_health = row["devices"].as_array().unwrap().iter().find(|d| d["user_device_id"] == phone_device.device_id.to_string()).unwrap().clone();
    assert_eq!(phone_health["outbox_pending"], 0, "{phone_health}");
    assert!(phone_health.get("outbox_oldest_at").is_none());

    // A report that makes no sense is refused with the pull, which changes nothing.
    for query in ["outbox_pending=-1", "outbox_pending=many", "outbox_pending=1&outbox_oldest=yesterday", "outbox_pending=99999999999"] {
        let reply = app.client.get(format!("{}/v1/sync/pull?{query}", app.address))
            .bearer_auth(phone_device.debug_token())
            .header(veldwerk_sync_protocol::PROTOCOL_HEADER, veldwerk_sync_protocol::PROTOCOL_VERSION.to_string())
            .send().await.unwrap();
        let status = reply.status().as_u16();
        let body: Value = reply.json().await.unwrap();
        assert_eq!((status, body["code"].as_str().unwrap()), (400, "invalid_parameter"), "{query}: {body}");
    }
    let (_, row) = progress_of(&app, &trainer.token, cohort, phone_device.user_id).await;
    assert_eq!(row["devices"][0]["outbox_pending"], 0);

    // Push registration shows as reachable; a revoked device leaves the view.
    app.call(reqwest::Method::PUT, "/v1/me/push-device", Some(tablet_device.debug_token()), Some(json!({
        "token": "tablet-token", "platform": "android", "locale": "nl-NL", "time_zone": "Europe/Amsterdam", "app_version": "1.4.0"
    }))).await.expect(200);
    app.delete(&format!("/v1/me/devices/{}", phone_device.device_id), tablet_device.debug_token()).await.expect(204);
    let (_, row) = progress_of(&app, &trainer.token, cohort, phone_device.user_id).await;
    assert_eq!(row["devices"].as_array().unwrap().len(), 1);
    assert_eq!(row["devices"][0]["push_reachable"], true);
    assert_eq!(row["push_reachable"], true);
});

db_test!(async fn a_trainer_reads_a_participants_work_and_the_read_is_audited(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let kept = Uuid::now_v7();
    sanne.write("interviews", kept, Some(cohort), json!({ "name_consent": true, "interviewee_name": "Mevrouw Jansen", "status": "done", "notes": "over de speeltuin\nen de buren" }));
    let gone = Uuid::now_v7();
    sanne.write("interviews", gone, Some(cohort), json!({ "name_consent": false, "status": "draft" }));
    sanne.write("feedback_exercises", Uuid::now_v7(), Some(cohort), json!({ "direction": "given", "shared": false, "counterpart_name": "Ahmed", "observation": "Je luisterde goed" }));
    sanne.sync().await.unwrap();
    sanne.delete("interviews", gone);
    sanne.sync().await.unwrap();
    let work = app.get(&format!("/v1/cohorts/{cohort}/participants/{}/work", sanne.user_id), &trainer.token).await.expect(200);
    let interviews = work["interviews"].as_array().unwrap();
    assert_eq!(interviews.len(), 1, "deleted work is not shown: {work}");
    assert_eq!(interviews[0]["id"], kept.to_string());
    assert_eq!(interviews[0]["fields"]["notes"], "over de speeltuin\nen de buren");
    assert_eq!(work["feedback_exercises"][0]["fields"]["observation"], "Je luisterde goed");
    assert!(work.get("harvest").is_none());

    // The admin sees in the audit log who read whose work, without its content.
    let admin = demo_admin(&app).await;
    let log = app.get(&format!("/v1/audit-log?person={}", sanne.user_id), &admin.token).await.expect(200);
    let read = log.as_array().unwrap().iter().find(|e| e["action"] == "participant.work_read").expect("the read is audited");
    assert_eq!(read["actor_id"], trainer.user_id);
    assert_eq!(read["cohort_id"], cohort.to_string());
    assert!(!read.to_string().contains("speeltuin"));

    // Only the cohort's trainers and admins, and only for a participant of this cohort.
    let other = participant(&app, &trainer, &cohort.to_string(), "Pieter").await;
    let path = format!("/v1/cohorts/{cohort}/participants/{}/work", sanne.user_id);
    app.get(&path, &other.token).await.expect_error(403, "forbidden");
    let outsider = new_trainer(&app, &admin, "elders@veldwerk.test").await;
    app.get(&path, &outsider.token).await.expect_error(404, "not_found");
    for stranger in [trainer.user_id.clone(), Uuid::now_v7().to_string()] {
        app.get(&format!("/v1/cohorts/{cohort}/participants/{stranger}/work"), &trainer.token).await.expect_error(404, "not_found");
    }
    let reads = app.get(&format!("/v1/audit-log?person={}", sanne.user_id), &admin.token).await.expect(200);
    assert_eq!(reads.as_array().unwrap().iter().filter(|e| e["action"] == "participant.work_read").count(), 1, "refused reads are not reads");
});

db_test!(async fn a_nudge_goes_once_a_day_to_each_device_outside_its_quiet_hours(app) {
    let (phone_device, cohort, trainer) = phone(&app, "Sanne").await;
    let token = phone_device.debug_token().to_owned();
    let tablet_device = tablet(&app, &phone_device, &token).await;
    // The phone is in its quiet hours now; the tablet is not.
    let now = Utc::now().with_timezone(&chrono_tz::Europe::Amsterdam);
    let hh_mm = |offset: i64| {
        let at = now + Duration::hours(offset);
        format!("{:02}:{:02}", at.hour(), at.minute())
    };
    for (device, name, quiet) in [
        (&phone_device, "phone-token", (hh_mm(-1), hh_mm(2))),
        (&tablet_device, "tablet-token", (hh_mm(3), hh_mm(4))),
    ] {
        app.call(reqwest::Method::PUT, "/v1/me/push-device", Some(device.debug_token()), Some(json!({
            "token": name, "platform": "android", "locale": "nl-NL", "time_zone": "Europe/Amsterdam",
            "app_version": "1.0.0", "quiet_hours_start": quiet.0, "quiet_hours_end": quiet.1
        }))).await.expect(200);
    }

    let path = format!("/v1/cohorts/{cohort}/participants/{}/nudge", phone_device.user_id);
    let nudge = app.post(&path, Some(&trainer.token), json!({})).await.expect(202);
    assert_eq!(nudge["status"], "pending");
    // Once a day, whoever asks: the second, from an admin, is refused.
    let admin = demo_admin(&app).await;
    app.post(&path, Some(&admin.token), json!({})).await.expect_error(409, "already_nudged");
    run_once(&app.services, "nudge-test").await.unwrap();
    let (_, row) = progress_of(&app, &trainer.token, cohort, phone_device.user_id).await;
    let last = &row["last_nudge"];
    assert_eq!(last["id"], nudge["id"]);
    assert_eq!(last["status"], "dispatched");
    let deliveries = last["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "one per device: {last}");
    let status_of = |device: &Device| deliveries.iter().find(|d| d["user_device_id"] == device.device_id.to_string()).unwrap()["status"].clone();
    assert_eq!(status_of(&tablet_device), "logged", "the tablet gets it now");
    assert_eq!(status_of(&phone_device), "pending", "the phone waits for its quiet hours to end");

    // Only participants of the cohort can be nudged, only by its trainers and admins.
    app.post(&format!("/v1/cohorts/{cohort}/participants/{}/nudge", trainer.user_id), Some(&trainer.token), json!({})).await.expect_error(404, "not_found");
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    app.post(&format!("/v1/cohorts/{cohort}/participants/{}/nudge", pieter.user_id), Some(pieter.debug_token()), json!({})).await.expect_error(403, "forbidden");
    let outsider = new_trainer(&app, &admin, "elders@veldwerk.test").await;
    app.post(&format!("/v1/cohorts/{cohort}/participants/{}/nudge", pieter.user_id), Some(&outsider.token), json!({})).await.expect_error(404, "not_found");
    // Pieter has no device with push: the nudge is accepted and reaches nobody, which the view says.
    app.post(&format!("/v1/cohorts/{cohort}/participants/{}/nudge", pieter.user_id), Some(&trainer.token), json!({})).await.expect(202);
    run_once(&app.services, "nudge-test").await.unwrap();
    let (_, row) = progress_of(&app, &trainer.token, cohort, pieter.user_id).await;
    assert_eq!(row["last_nudge"]["deliveries"], json!([]));
});
