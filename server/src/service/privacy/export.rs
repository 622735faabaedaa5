//! A participant's export (AVG right of access): everything about them as one tar archive,
//! streamed while it is read from the database and storage, so memory stays bounded whatever
//! its size and no request waits for it.
//!
//! Layout (format `veldwerk-export`, version 1; every JSON file is UTF-8):
//!
//! ```text
//! veldwerk-export/manifest.json                       format, version, subject, time, layout
//! veldwerk-export/account.json                        account, cohorts, devices with sessions
//!                                                     and push registration
//! veldwerk-export/records/<collection>/<id>.json      each record they own (not deleted),
//!                                                     with its fields and kept conflicts
//! veldwerk-export/shared-with-me/feedback_exercises/<id>.json
//!                                                     feedback about them shared with them
//! veldwerk-export/announcements/<id>.json             announcements addressed to them
//! veldwerk-export/attachments/<id>                    the bytes of each stored attachment of
//!                                                     theirs (its metadata is the record
//!                                                     records/attachments/<id>.json)
//! ```

use bytes::Bytes;
use chrono::{DateTime, Utc};
use futures_util::{Stream, StreamExt};
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::schema::{ATTACHMENTS, COLLECTIONS, SHARED_FIELD};

use super::super::{
    Actor, Error, Result, Role, Services,
    audit::{self, AuditAction, AuditEvent},
};
use crate::store::{
    accounts as account_store, cohorts as cohort_store, privacy as store, push as push_store,
    sync::{self as sync_store, StoredRecord},
};

/// The archive's top folder, and its format name in the manifest.
const ROOT: &str = "veldwerk-export";
/// Records read from the database at a time.
const PAGE: u64 = 200;
/// Chunks waiting for the client at most: the producer waits for a slow reader, so a large
/// export holds a few chunks in memory, not the archive.
const CHANNEL_CHUNKS: usize = 8;

impl Services {
    /// The caller's own export (any role: staff have devices and sessions too).
    pub async fn export_own_data(
        &self,
        actor: &Actor,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        self.start_export(actor, actor.user_id).await
    }

    /// A participant's export, for an admin of their provider.
    pub async fn export_participant(
        &self,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        actor.require(&[Role::Admin])?;
        self.participant_of_provider(actor, user_id).await?;
        self.start_export(actor, user_id).await
    }

    async fn start_export(
        &self,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<impl Stream<Item = std::io::Result<Bytes>> + Send + 'static> {
        let user = account_store::find_user(&self.db, user_id)
            .await?
            .ok_or(Error::NotFound("user"))?;
        audit::record(
            &self.db,
            user.provider_id,
            Some(actor),
            AuditEvent::new(AuditAction::DataExported).subject(user_id),
        )
        .await?;
        let (sender, mut receiver) = tokio::sync::mpsc::channel(CHANNEL_CHUNKS);
        let services = self.clone();
        tokio::spawn(async move {
            let mut archive = Archive { sender };
            if let Err(err) = services.write_export(&mut archive, user).await {
                tracing::error!(error = %err, user.id = %user_id, "an export failed midway");
                // The client sees the body end in an error, never a short archive as whole.
                let _ = archive
                    .sender
                    .send(Err(std::io::Error::other("the export failed")))
                    .await;
            }
        });
        Ok(futures_util::stream::poll_fn(move |cx| {
            receiver.poll_recv(cx)
        }))
    }

    async fn write_export(
        &self,
        archive: &mut Archive,
        user: crate::store::entity::user::Model,
    ) -> Result<()> {
        let now = Utc::now();
        archive
            .json(
                "manifest.json",
                &json!({
                    "format": ROOT,
                    "version": 1,
                    "subject_id": user.id,
                    "exported_at": now,
                    "layout": {
                        "account.json": "the account, its cohorts, devices, sessions and push registrations",
                        "records/<collection>/<id>.json": "each record of theirs that is not deleted",
                        "shared-with-me/feedback_exercises/<id>.json": "feedback about them that others shared with them",
                        "announcements/<id>.json": "announcements addressed to them",
                        "attachments/<id>": "the bytes of each stored attachment of theirs",
                    },
                }),
                now,
            )
            .await?;

        let cohorts = cohort_store::list_cohorts_of_member(&self.db, user.id).await?;
        let mut memberships = Vec::new();
        for cohort in &cohorts {
            let member = cohort_store::find_membership(&self.db, cohort.id, user.id).await?;
            memberships.push(json!({
                "cohort_id": cohort.id,
                "name": cohort.name,
                "role": member.as_ref().map(|m| m.role.clone()),
                "joined_at": member.map(|m| m.created_at),
            }));
        }
        let sessions = store::sessions_of(&self.db, user.id).await?;
        let mut devices = Vec::new();
        for device in account_store::list_devices(&self.db, user.id).await? {
            let push = push_store::find_push_device(&self.db, device.id).await?;
            devices.push(json!({
                "id": device.id,
                "name": device.name,
                "created_at": device.created_at,
                "last_seen_at": device.last_seen_at,
                "revoked_at": device.revoked_at,
                "wipe_requested_at": device.wipe_requested_at,
                "last_sync_at": device.last_sync_at,
                "outbox_pending": device.outbox_pending,
                "outbox_oldest_at": device.outbox_oldest_at,
                "app_version": device.app_version,
                "sessions": sessions
                    .iter()
                    .filter(|session| session.device_id == device.id)
                    .map(|session| json!({
                        "created_at": session.created_at,
                        "expires_at": session.expires_at,
                        "used_at": session.used_at,
                    }))
                    .collect::<Vec<_>>(),
                "push": push.map(|push| json!({
                    "platform": push.platform,
                    "locale": push.locale,
                    "time_zone": push.time_zone,
                    "app_version": push.app_version,
                    "quiet_hours_start": push.quiet_hours_start,
                    "quiet_hours_end": push.quiet_hours_end,
                    "registered_at": push.created_at,
                    "last_seen_at": push.last_seen_at,
                    "deactivated_at": push.deactivated_at,
                })),
            }));
        }
        archive
            .json(
                "account.json",
                &json!({
                    "id": user.id,
                    "role": user.role,
                    "display_name": user.display_name,
                    "email": user.email,
                    "organisation_id": user.organisation_id,
                    "created_at": user.created_at,
                    "cohorts": memberships,
                    "devices": devices,
                }),
                now,
            )
            .await?;

        let mut attachments: Vec<(Uuid, u64)> = Vec::new();
        for spec in COLLECTIONS {
            let mut after = None;
            loop {
                let page = sync_store::records_owned_by(&self.db, spec, user.id, None, after, PAGE)
                    .await?;
                let Some(last) = page.last() else { break };
                after = Some(last.id);
                for record in page.iter().filter(|record| !record.is_deleted()) {
                    if spec.name == ATTACHMENTS.name
                        && record.value("state").as_str() == Some("stored")
                    {
                        let size = record.value("size").as_u64().unwrap_or(0);
                        attachments.push((record.id, size));
                    }
                    archive
                        .json(
                            &format!("records/{}/{}.json", spec.name, record.id),
                            &record_json(record),
                            record.created_at,
                        )
                        .await?;
                }
            }
        }

        let cohort_ids: Vec<Uuid> = cohorts.iter().map(|cohort| cohort.id).collect();
        for record in sync_store::feedback_naming(&self.db, user.id, None).await? {
            let shared = record.value(SHARED_FIELD) == &Value::Bool(true);
            if shared && !record.is_deleted() && cohort_ids.contains(&record.cohort_id) {
                archive
                    .json(
                        &format!("shared-with-me/feedback_exercises/{}.json", record.id),
                        &record_json(&record),
                        record.created_at,
                    )
                    .await?;
            }
        }

        let recipient = (user.role == Role::Participant.as_str()).then_some(user.id);
        // One read: a person's announcements are few, and several published in one
        // transaction share a version, which a page cut by version could split.
        let rows = sync_store::changed_announcements(
            &self.db,
            &cohort_ids,
            recipient,
            -1,
            i64::MAX,
            sync_store::UNLIMITED,
        )
        .await?;
        for row in &rows {
            let id: Uuid = row.try_get("", "id")?;
            let published: DateTime<Utc> = row.try_get("", "publish_at")?;
            archive
                .json(
                    &format!("announcements/{id}.json"),
                    &json!({
                        "id": id,
                        "cohort_id": row.try_get::<Uuid>("", "cohort_id")?,
                        "title": row.try_get::<String>("", "title")?,
                        "body": row.try_get::<String>("", "body")?,
                        "published_at": published,
                        "to_whole_cohort": row.try_get::<bool>("", "to_whole_cohort")?,
                    }),
                    published,
                )
                .await?;
        }

        for (id, size) in attachments {
            let mut bytes = self.blobs.read(id, None).await?;
            archive
                .header(&format!("attachments/{id}"), size, now)
                .await?;
            let mut written = 0u64;
            while let Some(chunk) = bytes.next().await {
                let chunk = chunk.map_err(|err| Error::Internal(err.into()))?;
                written += chunk.len() as u64;
                archive.send(chunk).await?;
            }
            if written != size {
                return Err(Error::Internal(anyhow::anyhow!(
                    "attachment {id} has {written} bytes in storage, its record says {size}"
                )));
            }
            archive.pad(size).await?;
        }
        archive.finish().await
    }
}

/// A record as the export shows it: its fields as the app knows them.
fn record_json(record: &StoredRecord) -> Value {
    let fields: serde_json::Map<String, Value> = record
        .spec
        .fields
        .iter()
        .filter_map(|field| {
            record
                .state
                .get(field.name)
                .map(|stamped| (field.name.to_owned(), stamped.value.clone()))
        })
        .collect();
    json!({
        "collection": record.spec.name,
        "id": record.id,
        "cohort_id": record.cohort_id,
        "owner_id": record.owner_id,
        "created_at": record.created_at,
        "fields": fields,
        "conflicts": record.conflicts,
    })
}

/// A tar (ustar) archive written to a channel: a 512-byte header per file, the content padded
/// to 512 bytes, and two empty blocks at the end. Names stay under ustar's 100 bytes (ids, not
/// user-chosen file names).
struct Archive {
    sender: tokio::sync::mpsc::Sender<std::io::Result<Bytes>>,
}

const BLOCK: u64 = 512;

impl Archive {
    async fn send(&mut self, bytes: Bytes) -> Result<()> {
        self.sender
            .send(Ok(bytes))
            .await
            // The client went away: stop reading the database for nobody.
            .map_err(|_| Error::Internal(anyhow::anyhow!("the export's reader went away")))
    }

    async fn json(&mut self, name: &str, value: &Value, modified: DateTime<Utc>) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(value).map_err(anyhow::Error::from)?;
        let size = bytes.len() as u64;
        self.header(name, size, modified).await?;
        self.send(Bytes::from(bytes)).await?;
        self.pad(size).await
    }

    async fn header(&mut self, name: &str, size: u64, modified: DateTime<Utc>) -> Result<()> {
        let header = tar_header(&format!("{ROOT}/{name}"), size, modified)?;
        self.send(Bytes::copy_from_slice(&header)).await
    }

    async fn pad(&mut self, size: u64) -> Result<()> {
        let rest = (BLOCK - size % BLOCK) % BLOCK;
        if rest > 0 {
            self.send(Bytes::from(vec![0u8; rest as usize])).await?;
        }
        Ok(())
    }

    async fn finish(&mut self) -> Result<()> {
        self.send(Bytes::from(vec![0u8; 2 * BLOCK as usize])).await
    }
}

/// A ustar header for a regular file.
fn tar_header(name: &str, size: u64, modified: DateTime<Utc>) -> Result<[u8; 512]> {
    let mut header = [0u8; 512];
    if name.len() > 100 {
        return Err(Error::Internal(anyhow::anyhow!(
            "export entry name too long: {name}"
        )));
    }
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let digits = format!("{value:0width$o}", width = field.len() - 1);
        field[..digits.len()].copy_from_slice(digits.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], size);
    octal(
        &mut header[136..148],
        u64::try_from(modified.timestamp()).unwrap_or(0),
    );
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[265..273].copy_from_slice(b"veldwerk");
    header[297..305].copy_from_slice(b"veldwerk");
    // The checksum is computed with its own field read as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|&byte| u32::from(byte)).sum();
    let digits = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(digits.as_bytes());
    Ok(header)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_has_a_valid_checksum_and_octal_size() {
        let header = tar_header("veldwerk-export/a.json", 1_234, DateTime::UNIX_EPOCH).unwrap();
        let stored = std::str::from_utf8(&header[148..154]).unwrap();
        let mut blank = header;
        blank[148..156].copy_from_slice(b"        ");
        let sum: u32 = blank.iter().map(|&b| u32::from(b)).sum();
        assert_eq!(u32::from_str_radix(stored, 8).unwrap(), sum);
        assert_eq!(&header[124..135], b"00000002322");
    }

    #[test]
    fn a_name_longer_than_ustar_allows_is_refused() {
        assert!(tar_header(&"x".repeat(101), 0, DateTime::UNIX_EPOCH).is_err());
    }
}
