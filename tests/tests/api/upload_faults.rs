//! Uploads over connections that break at the worst moments, as on a train: cut right after a
//! chunk's body (with a reset or a plain close), cut while the upload is being finished, a body
//! shorter than it said; and storage left clean afterwards. Every scenario runs on SQLite and
//! PostgreSQL, with local and S3 storage.

use std::time::Duration;

use sea_orm::{
    ConnectionTrait,
    sea_query::{Expr, ExprTrait, Query},
};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use uuid::Uuid;
use veldwerk_tests::{TestApp, storage_test};

use crate::{
    attachments::{
        declare, download, file_bytes, finish, interview, object_keys, send_chunk,
        storage_settles_to,
    },
    sync::phone,
};

/// A request's head for a chunk of `length` bytes at `offset`.
fn patch_head(token: &str, id: Uuid, offset: usize, length: usize) -> String {
    format!(
        "PATCH /v1/attachments/{id}/content HTTP/1.1\r\nHost: veldwerk\r\nAuthorization: Bearer \
         {token}\r\nUpload-Offset: {offset}\r\nContent-Type: application/offset+octet-stream\r\n\
         Content-Length: {length}\r\n\r\n"
    )
}

/// Opens a connection, sends `head` and `body`, and cuts the connection without reading the
/// answer: with a reset (RST) or a plain close (FIN).
async fn send_and_cut(app: &TestApp, head: &str, body: &[u8], reset: bool) {
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body).await.unwrap();
    if reset {
        stream.set_zero_linger().unwrap();
    }
    drop(stream);
}

/// The attachment's metadata once the server has dealt with the request that was cut: polls
/// until `received` moves past `before` (or the file is stored), for at most two seconds.
async fn settled(app: &TestApp, token: &str, id: Uuid, before: i64) -> serde_json::Value {
    let mut meta = json!(null);
    for _ in 0..100 {
        meta = app
            .get(&format!("/v1/attachments/{id}"), token)
            .await
            .expect(200);
        if meta["received"].as_i64() != Some(before) || meta["state"] == "stored" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    meta
}

/// The bytes the recorded parts of an upload hold.
async fn recorded_bytes(app: &TestApp, id: Uuid) -> i64 {
    let statement = Query::select()
        .column("length")
        .from("attachment_parts")
        .and_where(Expr::col("attachment_id").eq(id))
        .to_owned();
    let rows = app.services.db().query_all(&statement).await.unwrap();
    rows.iter()
        .map(|row| row.try_get::<i64>("", "length").unwrap())
        .sum()
}

storage_test!(async fn chunks_whose_connection_is_cut_right_after_the_body_are_kept(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(1_048_576, 11);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "audio/mp4").await;

    // Every chunk's connection is cut right after its body, alternately reset and closed; the
    // app then asks where the server is and goes on from there, as a real one does.
    let mut received = 0i64;
    let mut cuts = 0;
    loop {
        assert!(cuts < 200, "the upload makes progress ({received} bytes after {cuts} cuts)");
        let offset = usize::try_from(received).unwrap();
        let end = (offset + 65_536).min(bytes.len());
        let head = patch_head(&token, id, offset, end - offset);
        send_and_cut(&app, &head, &bytes[offset..end], cuts % 2 == 0).await;
        cuts += 1;
        let meta = settled(&app, &token, id, received).await;
        if meta["state"] == "stored" {
            break;
        }
        received = meta["received"].as_i64().unwrap();
        // What the server says it has is what its recorded parts hold: never more. Once the last
        // byte is in, the upload may complete (its parts combined and removed) between the two
        // reads: then it must say so.
        let recorded = recorded_bytes(&app, id).await;
        if recorded != received
            && app.get(&format!("/v1/attachments/{id}"), &token).await.expect(200)["state"] == "stored"
        {
            assert_eq!(received, i64::try_from(bytes.len()).unwrap(), "stored early after cut {cuts}");
            break;
        }
        assert_eq!(recorded, received, "after cut {cuts}");
    }

    // The last byte finished the upload although nobody waited for the answer.
    let (status, _, body) = download(&app, &token, id, None).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "the file arrived intact after {cuts} cut chunks");
    // No part outlives the finished upload.
    storage_settles_to(&app, &[format!("blobs/{}", id.simple())]).await;
});

storage_test!(async fn a_finish_whose_connection_is_reset_completes_and_a_repeat_joins_it(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(6_000_000, 12);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "audio/mp4").await;

    // All bytes but the last arrive; the connection of the last chunk, whose arrival starts the
    // assembly and verification of the file, is closed right after its body.
    let last = bytes.len() - 1;
    crate::attachments::upload(&app, &token, id, &bytes[..last], 1_000_000).await;
    send_and_cut(&app, &patch_head(&token, id, last, 1), &bytes[last..], false).await;
    settled(&app, &token, id, last as i64).await;
    // An explicit finish whose connection is closed at once, too.
    let finish_head = format!(
        "POST /v1/attachments/{id}/finish HTTP/1.1\r\nHost: veldwerk\r\nAuthorization: Bearer \
         {token}\r\nContent-Length: 0\r\n\r\n"
    );
    send_and_cut(&app, &finish_head, &[], false).await;

    // The app asks again at once: it is not locked out, it gets the finished file.
    let stored = finish(&app, &token, id).await.expect(200);
    assert_eq!(stored["state"], "stored");
    let repeated = send_chunk(&app, &token, id, last, &bytes[last..]).await;
    assert_eq!(repeated.status, 204);
    let (status, _, body) = download(&app, &token, id, None).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "the file arrived intact");
    // No part outlives the finished upload, once storage settles (as in the test above): in one
    // CI run on S3 the last chunk's part was still listed right after the repeat's answer.
    storage_settles_to(&app, &[format!("blobs/{}", id.simple())]).await;
});

storage_test!(async fn a_body_shorter_than_it_said_keeps_what_arrived(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(200_000, 13);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/jpeg").await;

    // The head promises 100,000 bytes; 60,000 come, then the phone stops sending.
    let mut stream = TcpStream::connect(app.address.trim_start_matches("http://"))
        .await
        .unwrap();
    stream.write_all(patch_head(&token, id, 0, 100_000).as_bytes()).await.unwrap();
    stream.write_all(&bytes[..60_000]).await.unwrap();
    stream.shutdown().await.unwrap();
    let mut answer = String::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer)).await;
    // Whether or not the answer reaches it, it must not tell the app to shrink its chunks.
    if !answer.is_empty() {
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        assert!(answer.contains("body_incomplete"), "{answer}");
    }
    let meta = settled(&app, &token, id, 0).await;
    assert_eq!(meta["received"], 60_000, "the bytes that arrived are kept");
    assert_eq!(recorded_bytes(&app, id).await, 60_000);

    // The app goes on from there and the file is whole.
    crate::attachments::upload(&app, &token, id, &bytes, 50_000).await;
    let (_, _, body) = download(&app, &token, id, None).await;
    assert!(body == bytes);
});

storage_test!(async fn the_collector_removes_parts_no_upload_needs(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(30_000, 14);
    let pending = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/jpeg").await;
    send_chunk(&app, &token, pending, 0, &bytes[..10_000]).await.expect(204);
    let recorded = object_keys(&app).await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");

    // Parts the database lost track of (a process that died between storing a part and
    // recording it): one of the pending upload, one of an upload nobody knows.
    let blobs = app.services.blobs();
    let stray = blobs.put_part(pending, 10_000, vec![bytes[10_000..20_000].to_vec().into()]).await.unwrap();
    let unknown = blobs.put_part(Uuid::now_v7(), 0, vec![bytes::Bytes::from_static(b"x")]).await.unwrap();

    // Within the hour a stray part of a pending upload may still be about to be recorded.
    let hour = Duration::from_secs(3_600);
    veldwerk_server::jobs::attachments::run_once(&app.services, hour).await.unwrap();
    let mut expected = vec![recorded[0].clone(), stray.clone()];
    expected.sort();
    assert_eq!(object_keys(&app).await, expected, "{unknown} is gone, the pending upload's parts stay");

    // After it, only what the upload recorded stays, and the upload goes on.
    veldwerk_server::jobs::attachments::run_once(&app.services, Duration::ZERO).await.unwrap();
    assert_eq!(object_keys(&app).await, recorded);
    crate::attachments::upload(&app, &token, pending, &bytes, 10_000).await;
    let (_, _, body) = download(&app, &token, pending, None).await;
    assert!(body == bytes);
    assert_eq!(object_keys(&app).await, [format!("blobs/{}", pending.simple())]);
});
