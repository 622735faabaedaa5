//! Trainer announcements to a cohort or chosen participants. A published announcement lands in
//! each recipient's synced inbox (the read-only `announcements` collection); participants sync a
//! read receipt (`announcement_reads`) when they open it.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Actor, Error, Result, Role, Services, accounts::required_text};
use crate::store::{
    announcements as store, cohorts as cohort_store,
    entity::{announcement, notification},
    push as push_store, sync,
};

/// A new announcement.
#[derive(Debug)]
pub struct NewAnnouncement {
    pub title: String,
    pub body: String,
    /// Participants to reach; empty means the whole cohort.
    pub recipient_ids: Vec<Uuid>,
    /// When to send it; now when absent or past.
    pub publish_at: Option<DateTime<Utc>>,
    /// Whether the push waits for each device's quiet hours.
    pub respect_quiet_hours: bool,
}

/// An announcement with who it reaches and who read it.
#[derive(Debug)]
pub struct AnnouncementView {
    pub announcement: announcement::Model,
    /// Participants it reaches.
    pub recipients: Vec<Uuid>,
    /// Participants who synced a read receipt.
    pub read_by: Vec<Uuid>,
    /// Push deliveries to the recipients' devices.
    pub deliveries: Vec<crate::store::entity::delivery::Model>,
    /// Whose device each delivery went to, by delivery id.
    pub delivery_recipients: std::collections::HashMap<Uuid, Uuid>,
}

impl AnnouncementView {
    /// The deliveries to one participant's devices.
    pub fn deliveries_of(
        &self,
        user_id: Uuid,
    ) -> impl Iterator<Item = &crate::store::entity::delivery::Model> {
        self.deliveries
            .iter()
            .filter(move |delivery| self.delivery_recipients.get(&delivery.id) == Some(&user_id))
    }
}

/// Longest announcement body, in characters.
pub const MAX_BODY_CHARS: usize = 5_000;

impl Services {
    /// Publishes an announcement now, or schedules it (admins and the cohort's trainers).
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
        let scheduled = new.publish_at.is_some_and(|at| at > now);
        let announcement = announcement::Model {
            id: Uuid::now_v7(),
            cohort_id,
            author_id: actor.user_id,
            title,
            body,
            to_whole_cohort,
            status: if scheduled { "scheduled" } else { "published" }.into(),
            publish_at: new.publish_at.filter(|_| scheduled).unwrap_or(now),
            created_at: now,
            version: 0,
            respect_quiet_hours: new.respect_quiet_hours,
        };
        let reached = if to_whole_cohort {
            participants
        } else {
            recipients.clone()
        };
        let txn = crate::store::begin_write(&self.db).await?;
        store::insert_announcement(&txn, announcement.clone(), &recipients).await?;
        let announcement = if scheduled {
            announcement
        } else {
            self.publish_in(&txn, announcement, &reached, now).await?
        };
        txn.commit().await?;
        if !scheduled {
            self.notify_change(&[], &reached);
            self.wake_push_worker();
        }
        Ok(AnnouncementView {
            announcement,
            recipients: reached,
            read_by: Vec::new(),
            deliveries: Vec::new(),
            delivery_recipients: Default::default(),
        })
    }

    /// Puts an announcement in the inboxes (a sync version) and queues a push notification for
    /// each recipient.
    async fn publish_in(
        &self,
        txn: &sea_orm::DatabaseTransaction,
        mut announcement: announcement::Model,
        recipients: &[Uuid],
        now: DateTime<Utc>,
    ) -> Result<announcement::Model> {
        let version = sync::next_version(txn).await?;
        store::mark_published(txn, announcement.id, version).await?;
        announcement.status = "published".into();
        announcement.version = version;
        let notifications = recipients
            .iter()
            .map(|user_id| notification::Model {
                id: Uuid::now_v7(),
                dedupe_key: format!("announcement:{}:{user_id}", announcement.id),
                kind: "announcement".into(),
                user_id: *user_id,
                cohort_id: announcement.cohort_id,
                assignment_id: None,
                announcement_id: Some(announcement.id),
                due_at: now,
                status: "pending".into(),
                status_reason: None,
                created_at: now,
                updated_at: now,
            })
            .collect();
        push_store::insert_notifications(txn, notifications).await?;
        Ok(announcement)
    }

    /// Publishes scheduled announcements whose time has come; returns how many.
    pub async fn publish_due_announcements(&self, now: DateTime<Utc>) -> Result<usize> {
        let due = store::due_scheduled(&self.db, now).await?;
        for announcement in &due {
            let participants = self.cohort_participants(announcement.cohort_id).await?;
            let recipients = if announcement.to_whole_cohort {
                participants
            } else {
                store::recipients_of(&self.db, &[announcement.id])
                    .await?
                    .remove(&announcement.id)
                    .unwrap_or_default()
            };
            let txn = crate::store::begin_write(&self.db).await?;
            // Claimed by the status change: a second worker finds it taken already.
            if !store::claim_scheduled(&txn, announcement.id).await? {
                txn.rollback().await?;
                continue;
            }
            self.publish_in(&txn, announcement.clone(), &recipients, now)
                .await?;
            txn.commit().await?;
            self.notify_change(&[], &recipients);
        }
        Ok(due.len())
    }

    /// Cancels a scheduled announcement before it goes out.
    pub async fn cancel_announcement(
        &self,
        actor: &Actor,
        cohort_id: Uuid,
        announcement_id: Uuid,
    ) -> Result<()> {
        self.managed_cohort(actor, cohort_id).await?;
        let announcement = store::find_announcements(&self.db, &[announcement_id])
            .await?
            .into_iter()
            .find(|a| a.cohort_id == cohort_id)
            .ok_or(Error::NotFound("announcement"))?;
        match announcement.status.as_str() {
            "cancelled" => Ok(()),
            "scheduled" if store::cancel_scheduled(&self.db, announcement_id).await? => Ok(()),
            _ => Err(Error::conflict(
                "already_published",
                "this announcement has gone out and cannot be cancelled",
            )),
        }
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
        let notifications = push_store::announcement_notifications(&self.db, &ids).await?;
        let announcement_of: std::collections::HashMap<Uuid, (Uuid, Uuid)> = notifications
            .iter()
            .filter_map(|n| Some((n.id, (n.announcement_id?, n.user_id))))
            .collect();
        let notification_ids: Vec<Uuid> = notifications.iter().map(|n| n.id).collect();
        let mut deliveries: std::collections::HashMap<Uuid, Vec<_>> = Default::default();
        for delivery in push_store::deliveries_of(&self.db, &notification_ids).await? {
            if let Some((announcement, user)) = announcement_of.get(&delivery.notification_id) {
                deliveries
                    .entry(*announcement)
                    .or_default()
                    .push((delivery, *user));
            }
        }
        Ok(announcements
            .into_iter()
            .map(|announcement| {
                let (deliveries, delivery_recipients) = deliveries
                    .remove(&announcement.id)
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(delivery, user)| {
                        let recipient = (delivery.id, user);
                        (delivery, recipient)
                    })
                    .unzip();
                AnnouncementView {
                    deliveries,
                    delivery_recipients,
                    recipients: if announcement.to_whole_cohort {
                        participants.clone()
                    } else {
                        targeted.remove(&announcement.id).unwrap_or_default()
                    },
                    read_by: readers.remove(&announcement.id).unwrap_or_default(),
                    announcement,
                }
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
