//! The attachment content URL as a tus 1.0 core upload resource: what a tus client asks
//! (`OPTIONS`, `HEAD`, `PATCH` with `Tus-Resumable`, `Upload-Checksum`), and the real
//! tus-js-client from npm uploading, interrupted and resumed by a new instance.

use base64::Engine;
use reqwest::{Method, StatusCode};
use sha2::{Digest, Sha256};
use uuid::Uuid;
use veldwerk_tests::{Reply, TestApp, storage_test};

use crate::{
    attachments::{declare, download, file_bytes, interview, object_keys, send_chunk},
    sync::phone,
};

fn content_url(app: &TestApp, id: Uuid) -> String {
    format!("{}/v1/attachments/{id}/content", app.address)
}

/// A tus `PATCH` with extra headers.
async fn tus_patch(
    app: &TestApp,
    token: &str,
    id: Uuid,
    offset: usize,
    bytes: &[u8],
    headers: &[(&str, &str)],
) -> Reply {
    let mut request = app
        .client
        .patch(content_url(app, id))
        .bearer_auth(token)
        .header("upload-offset", offset.to_string());
    if !headers.iter().any(|(name, _)| *name == "tus-resumable") {
        request = request.header("tus-resumable", "1.0.0");
    }
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    Reply::from(request.body(bytes.to_vec()).send().await.unwrap()).await
}

fn sha256_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(Sha256::digest(bytes))
}

storage_test!(async fn the_content_url_answers_what_a_tus_client_asks(app) {
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(120_000, 21);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "image/jpeg").await;

    // OPTIONS: what the server supports, without credentials.
    let options = app.client.request(Method::OPTIONS, content_url(&app, id)).send().await.unwrap();
    assert_eq!(options.status(), StatusCode::NO_CONTENT);
    let headers = options.headers();
    assert_eq!(headers["tus-version"], "1.0.0");
    assert_eq!(headers["tus-extension"], "checksum");
    assert_eq!(headers["tus-checksum-algorithm"], "sha256");
    assert_eq!(headers["tus-max-size"], (100 * 1024 * 1024).to_string());

    // HEAD: the offset and length, never cached.
    let head = |app: &TestApp, token: &str| {
        app.client.head(content_url(app, id)).bearer_auth(token).header("tus-resumable", "1.0.0").send()
    };
    let answer = head(&app, &token).await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let headers = answer.headers();
    assert_eq!(headers["upload-offset"], "0");
    assert_eq!(headers["upload-length"], "120000");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["tus-resumable"], "1.0.0");

    // PATCH: a version it does not speak, a body that is not offset bytes.
    let refused = tus_patch(&app, &token, id, 0, &bytes[..10], &[("tus-resumable", "0.2.2")]).await;
    assert_eq!(refused.headers["tus-version"], "1.0.0");
    refused.expect_error(412, "tus_version_not_supported");
    tus_patch(&app, &token, id, 0, &bytes[..10], &[("content-type", "text/plain")])
        .await
        .expect_error(415, "unsupported_media_type");

    // Checksums: another algorithm is refused; a body that does not match is discarded whole.
    let chunk = &bytes[..50_000];
    let octets = ("content-type", "application/offset+octet-stream");
    // (Refused from its headers, before the body is read: a small body, so that the answer is not
    // lost to the connection closing under a body still being sent.)
    tus_patch(&app, &token, id, 0, &chunk[..10], &[octets, ("upload-checksum", "md5 AAAA")])
        .await
        .expect_error(400, "checksum_algorithm_not_supported");
    let other = format!("sha256 {}", sha256_base64(&bytes[1..50_001]));
    let mismatch = tus_patch(&app, &token, id, 0, chunk, &[octets, ("upload-checksum", &other)]).await;
    assert_eq!(mismatch.status, 460);
    assert_eq!(mismatch.headers["upload-offset"], "0");
    assert_eq!(mismatch.headers["tus-resumable"], "1.0.0");
    assert_eq!(mismatch.expect_error(460, "checksum_mismatch")["details"]["received"], 0);
    assert_eq!(object_keys(&app).await, Vec::<String>::new(), "nothing of it was kept");
    let right = format!("sha256 {}", sha256_base64(chunk));
    let accepted = tus_patch(&app, &token, id, 0, chunk, &[octets, ("upload-checksum", &right)]).await;
    assert_eq!(accepted.status, 204);
    assert_eq!(accepted.headers["upload-offset"], "50000");
    assert_eq!(accepted.headers["tus-resumable"], "1.0.0");
    let answer = head(&app, &token).await.unwrap();
    assert_eq!(answer.headers()["upload-offset"], "50000");

    // The last byte stores the file: a plain tus client needs no extra call.
    let last = tus_patch(&app, &token, id, 50_000, &bytes[50_000..], &[octets]).await;
    assert_eq!(last.status, 204);
    assert_eq!(last.headers["upload-offset"], "120000");
    let meta = app.get(&format!("/v1/attachments/{id}"), &token).await.expect(200);
    assert_eq!(meta["state"], "stored");
    let answer = head(&app, &token).await.unwrap();
    assert_eq!(answer.headers()["upload-offset"], "120000");
    let (status, _, body) = download(&app, &token, id, None).await;
    assert!(status == 200 && body == bytes);

    // Errors carry the tus header and the one error shape too; strangers learn nothing.
    let unknown = send_chunk(&app, &token, Uuid::now_v7(), 0, b"x").await;
    assert_eq!(unknown.headers["tus-resumable"], "1.0.0");
    unknown.expect_error(404, "not_found");
    let answer = head(&app, "not-a-token").await.unwrap();
    assert_eq!(answer.status(), StatusCode::UNAUTHORIZED);
});

storage_test!(async fn tus_js_client_uploads_and_a_new_instance_resumes_from_the_server(app) {
    let Some(dir) = crate::fixtures::npm_check_dir("tus", "tus-js-client") else { return };
    let (mut phone, cohort, _) = phone(&app, "Sanne").await;
    let token = phone.debug_token().to_owned();
    let parent = interview(&mut phone, cohort).await;
    let bytes = file_bytes(4 * 1024 * 1024, 22);
    let id = declare(&mut phone, cohort, ("interviews", parent), &bytes, "audio/mp4").await;
    let files = tempfile::tempdir().unwrap();
    let file = files.path().join("recording.m4a");
    std::fs::write(&file, &bytes).unwrap();

    let output = tokio::process::Command::new("node")
        .arg(dir.join("upload.mjs"))
        .arg(content_url(&app, id))
        .arg(&token)
        .arg(&file)
        .output()
        .await
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let length = bytes.len() as i64;
    let server_offset = report["serverOffset"].as_i64().unwrap();
    // The first instance really stopped halfway, the server kept bytes, and the second instance
    // went on from the server's offset instead of starting again.
    assert!(report["stoppedAt"].as_i64().unwrap() < length, "{report}");
    assert!(server_offset > 0 && server_offset < length, "{report}");
    assert!(report["firstProgress"].as_i64().unwrap() >= server_offset, "{report}");

    let meta = app.get(&format!("/v1/attachments/{id}"), &token).await.expect(200);
    assert_eq!(meta["state"], "stored");
    let (status, _, body) = download(&app, &token, id, None).await;
    assert_eq!(status, 200);
    assert!(body == bytes, "the file arrived intact");
    assert_eq!(object_keys(&app).await, [format!("blobs/{}", id.simple())]);
});
