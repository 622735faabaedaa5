//! Trainer announcements to a cohort or chosen participants. A published announcement lands in
//! each recipient's synced inbox (the read-only `announcements` collection); participants sync a
//! read receipt (`announcement_reads`) when they open it.

use chrono::Utc;
use sea_orm::TransactionTrait;
use uuid::Uuid;

use super::{Actor, Error, Result, Role, Services, accounts::required_text};
use crate::store::{announcements as store, cohorts as cohort_store, entity::announcement, sync};

/// A new announcement.
#[derive(Debug)]
pub struct NewAnnouncement {
    pub title: String,
    pub body: String,
    /// Participants to reach; empty means the whole cohort.
    pub recipient_ids: Vec<Uuid>,
}

/// An announcement with who it reaches and who read it.
#[derive(Debug)]
pub struct AnnouncementView {
    pub announcement: announcement::Model,
    /// Participants it reaches.
    pub recipients: Vec<Uuid>,
    /// Participants who synced a read receipt.
    pub read_by: Vec<Uuid>,
}

/// Longest announcement body, in characters.
pub const MAX_BODY_CHARS: usize = 5_000;

impl Services {
    /// Publishes an announcement now (admins and the cohort's trainers).
    #[tracing::instrument(skip_all, fields(user.id = %actor.user_id, cohort.id = %cohort_id))]
    pub async fn publish_announcement(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
        new: NewAnnouncement,
    ) -> Result<AnnouncementView> {
        self.managed_cohort(actor, cohort_id).await?;
        let title = required_text("title", &new.title)?;
        let body = required_text("body", &new.body)?;
        if body.chars().count() > MAX_BODY_CHARS {
            return Err(Error::invalid(
                "body_too_long",
                format!("an announcement has at most {MAX_BODY_CHARS} characters"),
            ));
        }
        let participants = self.cohort_participants(cohort_id).await?;
        let mut recipients = new.recipient_ids;
        recipients.sort();
        recipients.dedup();
        if let Some(stranger) = recipients.iter().find(|id| !participants.contains(id)) {
            return Err(Error::Invalid {
                code: "unknown_recipient",
                message: format!("{stranger} is not a participant of this cohort"),
                details: Some(serde_json::json!({ "recipient_id": stranger })),
            });
        }
        let to_whole_cohort = recipients.is_empty();
        let now = Utc::now();
        let txn = self.db.begin().await?;
        let version = sync::next_version(&txn).await?;
        let announcement = announcement::Model {
            id: Uuid::now_v7(),
            cohort_id,
            author_id: actor.user_id,
            title,
            body,
            to_whole_cohort,
            status: "published".into(),
            publish_at: now,
            created_at: now,
            version,
        };
        store::insert_announcement(&txn, announcement.clone(), &recipients).await?;
        txn.commit().await?;
        let reached = if to_whole_cohort {
            participants
        } else {
            recipients
        };
        self.notify_change(&[], &reached);
        Ok(AnnouncementView {
            announcement,
            recipients: reached,
            read_by: Vec::new(),
        })
    }

    /// A cohort's announcements with their recipients and readers (admins and the cohort's
    /// trainers).
    pub async fn list_announcements(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
    ) -> Result<Vec<AnnouncementView>> {
        self.managed_cohort(actor, cohort_id).await?;
        let announcements = store::list_announcements(&self.db, cohort_id).await?;
        let ids: Vec<Uuid> = announcements.iter().map(|a| a.id).collect();
        let mut targeted = store::recipients_of(&self.db, &ids).await?;
        let mut readers = store::readers_of(&self.db, &ids).await?;
        let participants = self.cohort_participants(cohort_id).await?;
        Ok(announcements
            .into_iter()
            .map(|announcement| AnnouncementView {
                recipients: if announcement.to_whole_cohort {
                    participants.clone()
                } else {
                    targeted.remove(&announcement.id).unwrap_or_default()
                },
                read_by: readers.remove(&announcement.id).unwrap_or_default(),
                announcement,
            })
            .collect())
    }

    async fn cohort_participants(&self, cohort_id: Uuid) -> Result<Vec<Uuid>> {
        Ok(cohort_store::list_members(&self.db, cohort_id)
            .await?
            .into_iter()
            .filter(|member| member.role == Role::Participant.as_str())
            .map(|member| member.user_id)
            .collect())
    }
}
