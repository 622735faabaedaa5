//! The data's life under the AVG (GDPR): a participant's export ([`export`]), erasure (here),
//! and the retention that purges a cohort's participant data after Day 6 ([`retention`]).
//!
//! Erasure reduces every record the participant owns to a tombstone (the deletion, and the ids
//! and choices that decide who learns of it: nothing they wrote), so every device that held them,
//! trainers' included, drops them at its next pull; clears their name from other members'
//! feedback exercises; deletes the bytes of their attachments at once (no grace period); and,
//! when the whole account goes, revokes and wipes their devices and empties the account row. The
//! audit log records that it happened, with counts, never what was erased.

pub mod export;
pub mod retention;

use std::collections::BTreeMap;

use chrono::Utc;
use serde_json::{Value, json};
use uuid::Uuid;
use veldwerk_sync_protocol::{
    Hlc,
    merge::{self, DELETED},
    schema::{ATTACHMENTS, COLLECTIONS, COUNTERPART_FIELD, SHARED_FIELD},
};

use super::{
    Actor, Error, Result, Role, Services,
    audit::{self, AuditAction, AuditEvent},
    sync::{ChangeNotice, keep_only_tombstone},
};
use crate::store::{
    accounts as account_store, attachments as attachment_store, privacy as store,
    sync::{self as sync_store, StoredRecord},
};

/// Fields of a feedback exercise that hold its counterpart's name or words.
const COUNTERPART_NAME_FIELD: &str = "counterpart_name";
const REACTION_FIELD: &str = "reaction";

/// Who asked for an erasure, as the audit log says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErasedBy {
    /// The participant, from the app (`DELETE /v1/me`).
    Themselves,
    /// An admin of their provider.
    Admin,
    /// The retention job, at the end of a cohort's retention period.
    Retention,
}

impl ErasedBy {
    fn as_str(self) -> &'static str {
        match self {
            Self::Themselves => "self",
            Self::Admin => "admin",
            Self::Retention => "retention",
        }
    }
}

/// What an erasure did, in counts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErasureSummary {
    /// Records reduced to tombstones (attachments included).
    pub records: u64,
    /// Other members' feedback exercises that no longer name them.
    pub mentions: u64,
    /// Attachments whose bytes were deleted.
    pub files: u64,
    /// Whether the account itself was emptied (false: they remain in another cohort).
    pub account: bool,
}

impl Services {
    /// Deletes the caller's own account and everything in it (participants only; app stores
    /// require in-app account deletion). The calling device, like every other, is told to wipe.
    pub async fn delete_own_account(&self, actor: &Actor) -> Result<ErasureSummary> {
        actor.require(&[Role::Participant])?;
        self.erase_participant_data(
            actor.provider_id,
            Some(actor),
            actor.user_id,
            None,
            ErasedBy::Themselves,
        )
        .await
    }

    /// Erases a participant of the caller's provider (admins only). Unknown, erased, other
    /// providers' users and staff are not found.
    pub async fn erase_participant(&self, actor: &Actor, user_id: Uuid) -> Result<ErasureSummary> {
        actor.require(&[Role::Admin])?;
        self.participant_of_provider(actor, user_id).await?;
        self.erase_participant_data(
            actor.provider_id,
            Some(actor),
            user_id,
            None,
            ErasedBy::Admin,
        )
        .await
    }

    /// A participant's devices, for an admin of their provider (to find the lost one).
    pub async fn participant_devices(
        &self,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<Vec<crate::store::entity::device::Model>> {
        actor.require(&[Role::Admin])?;
        self.participant_of_provider(actor, user_id).await?;
        Ok(account_store::list_devices(&self.db, user_id).await?)
    }

    /// Revokes a participant's device for an admin of their provider (the participant reported
    /// it lost by phone, say), telling it to wipe when `wipe`.
    pub async fn revoke_participant_device(
        &self,
        actor: &Actor,
        user_id: Uuid,
        device_id: Uuid,
        wipe: bool,
    ) -> Result<()> {
        actor.require(&[Role::Admin])?;
        self.participant_of_provider(actor, user_id).await?;
        self.revoke_device_of(actor, user_id, device_id, wipe).await
    }

    /// A participant of the caller's provider who has not been erased.
    pub(crate) async fn participant_of_provider(
        &self,
        actor: &Actor,
        user_id: Uuid,
    ) -> Result<crate::store::entity::user::Model> {
        account_store::find_user(&self.db, user_id)
            .await?
            .filter(|user| {
                user.provider_id == actor.provider_id
                    && user.role == Role::Participant.as_str()
                    && user.erased_at.is_none()
            })
            .ok_or(Error::NotFound("participant"))
    }

    /// Erases a participant's data: in one cohort (`only_cohort`, for retention; the account too
    /// when that was their last cohort) or everywhere. One write transaction, so a crash leaves
    /// either nothing or everything erased; the bytes are deleted after it commits (a crash
    /// there leaves them to the attachment collector, which removes the bytes of tombstones).
    pub(crate) async fn erase_participant_data(
        &self,
        provider_id: Uuid,
        actor: Option<&Actor>,
        user_id: Uuid,
        only_cohort: Option<Uuid>,
        by: ErasedBy,
    ) -> Result<ErasureSummary> {
        let now = Utc::now();
        let now_ms = u64::try_from(now.timestamp_millis()).unwrap_or(0);
        let mut summary = ErasureSummary::default();
        let mut notice = ChangeNotice::default();
        let mut files: Vec<Uuid> = Vec::new();

        let txn = crate::store::begin_write(&self.db).await?;
        let version = sync_store::next_version(&txn).await?;
        let mut owned: Vec<StoredRecord> = Vec::new();
        for spec in COLLECTIONS {
            owned.extend(
                sync_store::records_owned_by(
                    &txn,
                    spec,
                    user_id,
                    only_cohort,
                    None,
                    sync_store::UNLIMITED,
                )
                .await?,
            );
        }
        let naming = sync_store::feedback_naming(&txn, user_id, only_cohort).await?;
        // The server's clock moves past every clock these records carry, so its deletion and
        // its clearing win over whatever a device wrote, however far ahead its clock was.
        let newest: Option<Hlc> = owned
            .iter()
            .chain(&naming)
            .flat_map(|record| record.state.values().map(|stamped| stamped.clock.clone()))
            .max();
        let clock = self.server_clock(newest.as_ref(), now_ms);

        let deletion = BTreeMap::from([(DELETED.to_owned(), Value::Bool(true))]);
        for record in &mut owned {
            if record.spec.name == ATTACHMENTS.name {
                files.push(record.id);
            }
            record.state = merge::apply(&record.state, &deletion, &clock, &BTreeMap::new()).state;
            keep_only_tombstone(record.spec, &mut record.state);
            record.conflicts.clear();
            record.version = version;
            notice.record_cohorts.push(record.cohort_id);
        }
        // What of them is in a fellow member's feedback exercise: their id and name, and the
        // reaction they wrote to it as its counterpart.
        let unnamed = BTreeMap::from([
            (COUNTERPART_FIELD.to_owned(), Value::Null),
            (COUNTERPART_NAME_FIELD.to_owned(), Value::Null),
            (REACTION_FIELD.to_owned(), Value::Null),
            (SHARED_FIELD.to_owned(), Value::Bool(false)),
        ]);
        let mut naming = naming;
        for record in &mut naming {
            let deleted = record.is_deleted();
            record.state = merge::apply(&record.state, &unnamed, &clock, &BTreeMap::new()).state;
            if deleted {
                keep_only_tombstone(record.spec, &mut record.state);
            }
            // A losing value kept for the owner may hold their name or words too.
            record
                .conflicts
                .retain(|conflict| !unnamed.contains_key(&conflict.field));
            record.version = version;
            notice.users.push(record.owner_id);
            notice.record_cohorts.push(record.cohort_id);
        }
        for spec in COLLECTIONS {
            let changed: Vec<&StoredRecord> = owned
                .iter()
                .chain(&naming)
                .filter(|record| record.spec.name == spec.name)
                .collect();
            sync_store::upsert_records(&txn, spec, &changed, now).await?;
        }
        summary.records = owned.len() as u64;
        summary.mentions = naming.len() as u64;

        store::leave_cohorts(&txn, user_id, only_cohort).await?;
        let mut devices = Vec::new();
        if only_cohort.is_none() || store::remaining_cohorts(&txn, user_id).await? == 0 {
            devices = store::empty_account(&txn, user_id, now).await?;
            summary.account = true;
        }
        summary.files = files.len() as u64;
        let mut event = AuditEvent::new(AuditAction::ParticipantErased)
            .subject(user_id)
            .details(json!({
                "by": by.as_str(),
                "records": summary.records,
                "mentions": summary.mentions,
                "files": summary.files,
                "account": summary.account,
            }));
        if let Some(cohort) = only_cohort {
            event = event.cohort(cohort);
        }
        audit::record(&txn, provider_id, actor, event).await?;
        txn.commit().await?;

        for id in files {
            self.blobs.delete_parts_of(id).await?;
            self.blobs.delete_blob(id).await?;
            attachment_store::mark_collected(&self.db, id, Utc::now()).await?;
        }
        notice.users.push(user_id);
        notice.ended_devices = devices.clone();
        notice.wiped_devices = devices;
        notice.record_cohorts.sort();
        notice.record_cohorts.dedup();
        self.publish_notice(notice);
        tracing::info!(
            user.id = %user_id,
            by = by.as_str(),
            records = summary.records,
            files = summary.files,
            "participant erased"
        );
        Ok(summary)
    }
}
