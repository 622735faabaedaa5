//! Attachments: resumable upload, verification, download with ranges, limits, access, and
//! collection of deleted files. Every scenario runs on SQLite and PostgreSQL, with local and S3
//! storage (see `veldwerk_tests::storage_test!`).

use std::time::Duration;

use reqwest::Method;
use serde_json::json;
use sha2::{Digest, Sha256};
use uuid::Uuid;
use veldwerk_tests::{Reply, TestApp, client::Device, storage_test};

use crate::{
    fixtures::{invite_code, other_provider},
    sync::phone,
};

/// A file's content: not repetitive, so a misplaced chunk changes the hash.
pub(crate) fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    (0..len)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 33) as u8
        })
        .collect()
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// An interview of the device's participant, synced.
pub(crate) async fn interview(device: &mut Device, cohort: Uuid) -> Uuid {
    let id = Uuid::now_v7();
    device.write(
        "interviews",
        id,
        Some(cohort),
        json!({ "name_consent": false, "status": "draft", "notes": "whiteboard in het buurthuis" }),
    );
    device.sync().await.unwrap();
    id
}

/// Declares an attachment of `parent` for these bytes and syncs it; returns its id.
pub(crate) async fn declare(
    device: &mut Device,
    cohort: Uuid,
    parent: (&str, Uuid),
    bytes: &[u8],
    content_type: &str,
) -> Uuid {
    let id = Uuid::now_v7();
    device.write(
        "attachments",
        id,
        Some(cohort),
        json!({
            "parent_collection": parent.0, "parent_id": parent.1, "file_name": "whiteboard.jpg",
            "content_type": content_type, "size": bytes.len(), "sha256": sha256_hex(bytes),
        }),
    );
    device.sync().await.unwrap();
    assert!(device.rejected.is_empty(), "{:?}", device.rejected);
    id
}

pub(crate) async fn send_chunk(
    app: &TestApp,
    token: &str,
    id: Uuid,
    offset: usize,
    chunk: &[u8],
) -> Reply {
    let response = app
        .client
        .request(
            Method::PATCH,
            format!("{}/v1/attachments/{id}/content", app.address),
        )
        .bearer_auth(token)
        .header("upload-offset", offset.to_string())
        .header("content-type", "application/offset+octet-stream")
        .body(chunk.to_vec())
        .send()
        .await
        .unwrap();
    Reply::from(response).await
}

pub(crate) fn offset_of(reply: &Reply) -> usize {
    reply.headers["upload-offset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap()
}

pub(crate) async fn upload(app: &TestApp, token: &str, id: Uuid, bytes: &[u8], chunk: usize) {
    let mut offset = 0;
    while offset < bytes.len() {
        let end = (offset + chunk).min(bytes.len());
        let reply = send_chunk(app, token, id, offset, &bytes[offset..end]).await;
        assert_eq!(reply.status, 204, "{}", reply.body);
        offset = offset_of(&reply);
    }
}

pub(crate) async fn finish(app: &TestApp, token: &str, id: Uuid) -> Reply {
    app.call(
        Method::POST,
        &format!("/v1/attachments/{id}/finish"),
        Some(token),
        None,
    )
    .await
}

pub(crate) async fn download(
    app: &TestApp,
    token: &str,
    id: Uuid,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut request = app
        .client
        .get(format!("{}/v1/attachments/{id}/content", app.address))
        .bearer_auth(token);
    if let Some(range) = range {
        request = request.header("range", range);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.bytes().await.unwrap().to_vec())
}

storage_test!(async fn an_interrupted_upload_resumes_where_the_server_is(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(300_000, 1);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/jpeg").await;
    phone.pull().await.unwrap();
    assert_eq!(phone.view("attachments", id).unwrap()["state"], "pending");

    // Two chunks arrive, then the connection breaks; the app asks where to go on.
    send_chunk(&app, &token, id, 0, &bytes[..64_000]).await.expect(204);
    send_chunk(&app, &token, id, 64_000, &bytes[64_000..128_000]).await.expect(204);
    let meta = app.get(&format!("/v1/attachments/{id}"), &token).await.expect(200);
    assert_eq!(meta["received"], 128_000);
    assert_eq!(meta["state"], "pending");
    // A chunk whose answer was lost is sent again: harmless, nothing is appended twice.
    let again = send_chunk(&app, &token, id, 64_000, &bytes[64_000..128_000]).await;
    assert_eq!((again.status, offset_of(&again)), (204, 128_000));
    // A chunk past what arrived leaves a gap: refused with the offset to send from.
    let gap = send_chunk(&app, &token, id, 200_000, &bytes[200_000..250_000]).await;
    assert_eq!(offset_of(&gap), 128_000);
    assert_eq!(gap.expect_error(409, "offset_mismatch")["details"]["received"], 128_000);
    // A chunk that overlaps what arrived: only its new bytes are kept.
    let overlap = send_chunk(&app, &token, id, 100_000, &bytes[100_000..200_000]).await;
    assert_eq!((overlap.status, offset_of(&overlap)), (204, 200_000));
    upload(&app, &token, id, &bytes[..], 64_000).await;

    let stored = finish(&app, &token, id).await.expect(200);
    assert_eq!((stored["state"].clone(), stored["received"].clone()), (json!("stored"), json!(300_000)));
    // A repeated finish answers the same.
    assert_eq!(finish(&app, &token, id).await.expect(200), stored);
    // A chunk re-sent after the finish changes nothing.
    send_chunk(&app, &token, id, 0, &bytes[..10]).await.expect(204);

    let (status, headers, body) = download(&app, &token, id, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, bytes);
    assert_eq!(headers["content-type"], "image/jpeg");
    assert_eq!(headers["accept-ranges"], "bytes");
    let (status, headers, body) = download(&app, &token, id, Some("bytes=1000-1999")).await;
    assert_eq!((status, body.as_slice()), (206, &bytes[1000..2000]));
    assert_eq!(headers["content-range"], "bytes 1000-1999/300000");
    let (status, _, body) = download(&app, &token, id, Some("bytes=-500")).await;
    assert_eq!((status, body.as_slice()), (206, &bytes[299_500..]));
    let (status, _, body) = download(&app, &token, id, Some("bytes=0-18446744073709551615")).await;
    assert_eq!((status, body.len()), (200, bytes.len()), "the largest last byte means the end");
    let (status, headers, _) = download(&app, &token, id, Some("bytes=300000-")).await;
    assert_eq!(status, 416);
    assert_eq!(headers["content-range"], "bytes */300000");

    // Devices learn through sync that the file is there.
    phone.pull().await.unwrap();
    assert_eq!(phone.view("attachments", id).unwrap()["state"], "stored");
});

storage_test!(async fn a_corrupt_upload_is_refused_and_can_be_sent_again(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(50_000, 2);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "audio/mp4").await;

    finish(&app, &token, id).await.expect_error(422, "upload_incomplete");
    let mut corrupt = bytes.clone();
    corrupt[25_000] ^= 0xff;
    upload(&app, &token, id, &corrupt[..40_000], 16_384).await;
    // The last byte finishes the upload by itself: the chunk that brings it gets the verdict.
    let refused = send_chunk(&app, &token, id, 40_000, &corrupt[40_000..]).await;
    let refused = refused.expect_error(422, "hash_mismatch");
    assert_eq!(refused["details"]["received_sha256"], sha256_hex(&corrupt));
    let meta = app.get(&format!("/v1/attachments/{id}"), &token).await.expect(200);
    assert_eq!((meta["state"].clone(), meta["received"].clone()), (json!("pending"), json!(0)));
    finish(&app, &token, id).await.expect_error(422, "upload_incomplete");
    let (status, _, _) = download(&app, &token, id, None).await;
    assert_eq!(status, 409, "nothing to download before a verified upload");
    // More bytes than declared are refused.
    // (Refused from the request's length, before its body is read: a small body, so that the
    // answer is not lost to the connection closing under a body still being sent.)
    send_chunk(&app, &token, id, 49_990, &[0u8; 11]).await.expect_error(422, "size_exceeded");

    upload(&app, &token, id, &bytes, 16_384).await;
    finish(&app, &token, id).await.expect(200);
    let (_, _, body) = download(&app, &token, id, None).await;
    assert_eq!(body, bytes);
    // Nothing of the corrupt attempt, nor a part of the good one, is left behind in storage.
    let keys = object_keys(&app).await;
    assert_eq!(keys, [format!("blobs/{}", id.simple())], "{keys:?}");
});

/// Waits (up to five seconds) until storage holds just these keys: an upload finished by a
/// request nobody waited for removes its parts right after it stores the file.
pub(crate) async fn storage_settles_to(app: &TestApp, expected: &[String]) {
    let mut keys = Vec::new();
    for _ in 0..100 {
        keys = object_keys(app).await;
        if keys == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(keys, expected);
}

pub(crate) async fn object_keys(app: &TestApp) -> Vec<String> {
    use futures_util::TryStreamExt;
    let mut keys: Vec<String> = Vec::new();
    for prefix in ["blobs", "parts"] {
        let found: Vec<String> = app
            .services
            .blobs()
            .list(prefix)
            .try_collect()
            .await
            .unwrap();
        keys.extend(found);
    }
    keys.sort();
    keys
}

storage_test!(async fn limits_refuse_types_sizes_and_what_exceeds_the_quota(app) with |config| {
    config.attachments.max_file_bytes = 1_000;
    config.attachments.quota_bytes = 2_500;
    config.attachments.part_bytes = 600;
}; {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let attach = |phone: &mut Device, parent: Uuid, content_type: &str, size: usize| {
        let bytes = file_bytes(size, size as u64);
        let id = Uuid::now_v7();
        phone.write("attachments", id, Some(cohort), json!({
            "parent_collection": "interviews", "parent_id": parent, "file_name": "f",
            "content_type": content_type, "size": size, "sha256": sha256_hex(&bytes),
        }));
        id
    };
    attach(&mut phone, parent, "text/html", 10);
    attach(&mut phone, parent, "image/png", 1_001);
    attach(&mut phone, Uuid::now_v7(), "image/png", 10);
    let first = attach(&mut phone, parent, "image/png", 900);
    attach(&mut phone, parent, "application/pdf", 900);
    attach(&mut phone, parent, "audio/ogg", 900);
    phone.sync().await.unwrap();
    let codes: Vec<&str> = phone.rejected.iter().map(|(_, r)| r.code.as_deref().unwrap()).collect();
    assert_eq!(codes, ["content_type_not_allowed", "file_too_large", "unknown_parent", "quota_exceeded"]);
    phone.rejected.clear();

    // The file name may change; what identifies the bytes may not; the state is the server's.
    phone.write("attachments", first, None, json!({ "file_name": "whiteboard-2.png" }));
    phone.write("attachments", first, None, json!({ "sha256": "0".repeat(64) }));
    phone.write("attachments", first, None, json!({ "state": "stored" }));
    phone.sync().await.unwrap();
    let codes: Vec<&str> = phone.rejected.iter().map(|(_, r)| r.code.as_deref().unwrap()).collect();
    assert_eq!(codes, ["immutable_field", "read_only_field"]);
    assert_eq!(phone.view("attachments", first).unwrap()["file_name"], "whiteboard-2.png");

    // Deleting an attachment frees its share of the quota.
    phone.rejected.clear();
    phone.delete("attachments", first);
    attach(&mut phone, parent, "image/png", 900);
    phone.sync().await.unwrap();
    assert!(phone.rejected.is_empty(), "{:?}", phone.rejected);

    // A request larger than a part is stored as several parts; memory holds one at a time.
    let second = phone.ids("attachments").into_iter().find(|id| *id != first).unwrap();
    send_chunk(&app, &token, second, 0, &[0u8; 901]).await.expect_error(422, "size_exceeded");
    let whole = send_chunk(&app, &token, second, 0, &file_bytes(900, 900)).await;
    assert_eq!((whole.status, offset_of(&whole)), (204, 900));
    let (status, _, body) = download(&app, &token, second, None).await;
    assert_eq!((status, body), (200, file_bytes(900, 900)));
    send_chunk(&app, &token, second, 0, &[0u8; 10]).await.expect(204);
    // Bad requests get the one error shape.
    let reply = app.client
        .request(Method::PATCH, format!("{}/v1/attachments/{second}/content", app.address))
        .bearer_auth(&token).body("x").send().await.unwrap();
    Reply::from(reply).await.expect_error(400, "invalid_offset");
    app.get("/v1/attachments/not-a-uuid", &token).await.expect_error(400, "invalid_parameter");
    app.call(Method::GET, &format!("/v1/attachments/{second}"), None, None).await.expect_error(401, "unauthenticated");
});

storage_test!(async fn access_follows_the_record_the_file_belongs_to(app) {
    let (mut sanne, cohort, trainer) = phone(&app, "Sanne").await;
    let sanne_token = sanne.debug_token().to_owned();
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut pieter = Device::new(&app.address, &app.enrol(&code, "Pieter").await);
    let code = invite_code(&app, &trainer, &cohort.to_string()).await;
    let mut fatima = Device::new(&app.address, &app.enrol(&code, "Fatima").await);

    let feedback = Uuid::now_v7();
    sanne.write("feedback_exercises", feedback, Some(cohort), json!({
        "direction": "given", "counterpart_user_id": pieter.user_id, "shared": false,
        "observation": "je liet mij uitpraten",
    }));
    sanne.sync().await.unwrap();
    let bytes = file_bytes(20_000, 3);
    let id = declare(&mut sanne, cohort, ("feedback_exercises", feedback), &bytes, "application/pdf").await;
    upload(&app, &sanne_token, id, &bytes, 8_192).await;
    finish(&app, &sanne_token, id).await.expect(200);

    // Another participant is told nothing, whatever they try, and neither is the counterpart
    // while the exercise is not shared.
    for device in [&fatima, &pieter] {
        let token = device.debug_token();
        app.get(&format!("/v1/attachments/{id}"), token).await.expect_error(404, "not_found");
        assert_eq!(download(&app, token, id, None).await.0, 404);
        send_chunk(&app, token, id, 0, &bytes[..10]).await.expect_error(404, "not_found");
        finish(&app, token, id).await.expect_error(404, "not_found");
    }
    fatima.pull().await.unwrap();
    assert!(fatima.ids("attachments").is_empty());
    // Nor is another provider's admin.
    let outsider = other_provider(&app).await;
    app.get(&format!("/v1/attachments/{id}"), &outsider.token).await.expect_error(404, "not_found");
    assert_eq!(download(&app, &outsider.token, id, None).await.0, 404);

    // Shared: the counterpart sees and downloads it, but does not upload.
    sanne.write("feedback_exercises", feedback, None, json!({ "shared": true }));
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert_eq!(pieter.ids("attachments"), [id]);
    assert_eq!(pieter.view("attachments", id).unwrap()["state"], "stored");
    let (status, _, body) = download(&app, pieter.debug_token(), id, None).await;
    assert_eq!((status, body), (200, bytes.clone()));
    send_chunk(&app, pieter.debug_token(), id, 0, &bytes[..10]).await.expect_error(403, "forbidden");

    // The cohort's trainer reads it too.
    let (status, _, _) = download(&app, &trainer.token, id, None).await;
    assert_eq!(status, 200);
    app.get(&format!("/v1/attachments/{id}"), &trainer.token).await.expect(200);

    // Unshared again: evicted from the counterpart's device, and closed to them.
    sanne.write("feedback_exercises", feedback, None, json!({ "shared": false }));
    sanne.sync().await.unwrap();
    pieter.pull().await.unwrap();
    assert!(pieter.ids("attachments").is_empty());
    assert_eq!(download(&app, pieter.debug_token(), id, None).await.0, 404);
});

storage_test!(async fn two_uploads_at_once_both_arrive_whole(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let photo = file_bytes(1_000_000, 4);
    let recording = file_bytes(1_200_000, 5);
    let first = declare(&mut phone, cohort, ("interviews", parent), &photo, "image/jpeg").await;
    let second = declare(&mut phone, cohort, ("interviews", parent), &recording, "audio/mpeg").await;
    tokio::join!(
        upload(&app, &token, first, &photo, 65_536),
        upload(&app, &token, second, &recording, 65_536),
    );
    // The same chunk twice at once (a retry racing the original): one of them counts.
    let bytes = file_bytes(100_000, 6);
    let third = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/png").await;
    let (a, b) = tokio::join!(
        send_chunk(&app, &token, third, 0, &bytes[..50_000]),
        send_chunk(&app, &token, third, 0, &bytes[..50_000]),
    );
    assert_eq!((a.status, b.status), (204, 204));
    assert_eq!((offset_of(&a), offset_of(&b)), (50_000, 50_000));
    upload(&app, &token, third, &bytes, 50_000).await;
    let (x, y) = tokio::join!(finish(&app, &token, first), finish(&app, &token, second));
    x.expect(200);
    y.expect(200);
    finish(&app, &token, third).await.expect(200);
    for (id, expected) in [(first, &photo), (second, &recording), (third, &bytes)] {
        let (status, _, body) = download(&app, &token, id, None).await;
        assert_eq!(status, 200);
        assert!(body == *expected, "attachment {id} arrived intact");
    }
});

storage_test!(async fn a_deleted_records_files_are_collected_after_the_grace_period(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let kept_parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(40_000, 7);
    let doomed = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/jpeg").await;
    let partial = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/jpeg").await;
    let kept = declare(&mut phone, cohort, ("interviews", kept_parent), &bytes, "image/jpeg").await;
    for id in [doomed, kept] {
        upload(&app, &token, id, &bytes, 16_000).await;
        finish(&app, &token, id).await.expect(200);
    }
    send_chunk(&app, &token, partial, 0, &bytes[..16_000]).await.expect(204);

    // Deleting the interview deletes its attachments, on every device.
    phone.delete("interviews", parent);
    phone.sync().await.unwrap();
    assert!(!phone.ids("attachments").contains(&doomed));
    assert_eq!(phone.ids("attachments"), [kept]);
    assert_eq!(download(&app, &token, doomed, None).await.0, 404);

    // Within the grace period the bytes stay; after it they go, and only theirs.
    let grace = Duration::from_secs(3_600);
    let collected = veldwerk_server::jobs::attachments::run_once(&app.services, grace).await.unwrap();
    assert_eq!(collected, 0);
    assert_eq!(object_keys(&app).await.len(), 3, "two blobs and one part");
    let collected = veldwerk_server::jobs::attachments::run_once(&app.services, Duration::ZERO).await.unwrap();
    assert_eq!(collected, 2);
    assert_eq!(object_keys(&app).await, [format!("blobs/{}", kept.simple())]);
    let (status, _, body) = download(&app, &token, kept, None).await;
    assert_eq!((status, body), (200, bytes));
    // Nothing is collected twice.
    let again = veldwerk_server::jobs::attachments::run_once(&app.services, Duration::ZERO).await.unwrap();
    assert_eq!(again, 0);
});
