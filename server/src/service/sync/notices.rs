//! Change notices: which devices a committed change concerns, delivered to this replica's live
//! streams at once and to other replicas' through PostgreSQL `LISTEN/NOTIFY`.

use uuid::Uuid;

use crate::service::Services;

/// Which devices a change concerns, for live streams: they are poked to pull.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ChangeNotice {
    /// Every stream is concerned (a notice too large to list its audience).
    #[serde(default)]
    pub everyone: bool,
    /// Users whose own scope changed (record owners, feedback counterparts, new trainers).
    pub users: Vec<Uuid>,
    /// Cohorts whose records changed: their trainers are poked.
    pub record_cohorts: Vec<Uuid>,
    /// Cohorts whose schedule changed: all their members are poked.
    pub member_cohorts: Vec<Uuid>,
    /// Devices whose session ended (logout, revocation): their streams say so and close.
    #[serde(default)]
    pub ended_devices: Vec<Uuid>,
    /// Devices reported lost: their streams tell them to wipe, and close.
    #[serde(default)]
    pub wiped_devices: Vec<Uuid>,
}

/// The PostgreSQL channel that carries change notices between replicas.
const NOTICE_CHANNEL: &str = "veldwerk_changes";
/// PostgreSQL refuses NOTIFY payloads from 8,000 bytes.
const MAX_NOTICE_BYTES: usize = 7_900;

/// A notice as it travels between replicas.
#[derive(serde::Serialize, serde::Deserialize)]
struct RelayedNotice {
    /// The replica that sent it, which ignores its own.
    origin: Uuid,
    notice: ChangeNotice,
}

impl Services {
    /// Publishes a change to the live streams. Nobody listening is fine.
    pub(crate) fn notify_change(&self, member_cohorts: &[Uuid], users: &[Uuid]) {
        self.publish_notice(ChangeNotice {
            users: users.to_vec(),
            member_cohorts: member_cohorts.to_vec(),
            ..ChangeNotice::default()
        });
    }

    /// Pokes this replica's streams at once, and on PostgreSQL the other replicas' through
    /// `NOTIFY` (they run [`Services::relay_notices`]).
    pub(crate) fn publish_notice(&self, notice: ChangeNotice) {
        let notice = std::sync::Arc::new(notice);
        let _ = self.changes.send(notice.clone());
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let mut relayed = RelayedNotice {
            origin: self.instance_id,
            notice: (*notice).clone(),
        };
        let mut payload = serde_json::to_string(&relayed).unwrap_or_default();
        if payload.len() > MAX_NOTICE_BYTES {
            relayed.notice = ChangeNotice {
                everyone: true,
                ..ChangeNotice::default()
            };
            payload = serde_json::to_string(&relayed).unwrap_or_default();
        }
        let db = self.db.clone();
        tokio::spawn(async move {
            let statement = sea_orm::Statement::from_sql_and_values(
                sea_orm::DbBackend::Postgres,
                "SELECT pg_notify($1, $2)",
                [NOTICE_CHANNEL.into(), payload.into()],
            );
            if let Err(err) = sea_orm::ConnectionTrait::execute_raw(&db, statement).await {
                tracing::warn!(error = %err, "could not relay a change notice to other replicas");
            }
        });
    }

    /// Listens for other replicas' notices (PostgreSQL only) and pokes this replica's streams;
    /// reconnects after errors. Runs until the task is dropped.
    pub async fn relay_notices(self) {
        if self.db.get_database_backend() != sea_orm::DbBackend::Postgres {
            return;
        }
        let pool = self.db.get_postgres_connection_pool().clone();
        loop {
            let listener = async {
                let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await?;
                listener.listen(NOTICE_CHANNEL).await?;
                loop {
                    let notification = listener.recv().await?;
                    let Ok(relayed) = serde_json::from_str::<RelayedNotice>(notification.payload())
                    else {
                        continue;
                    };
                    if relayed.origin != self.instance_id {
                        let _ = self.changes.send(std::sync::Arc::new(relayed.notice));
                    }
                }
                #[allow(unreachable_code)]
                Ok::<(), sea_orm::sqlx::Error>(())
            };
            if let Err(err) = listener.await {
                tracing::warn!(error = %err, "change-notice listener failed; reconnecting");
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }

    /// Receives every change notice from now on.
    pub fn subscribe_changes(
        &self,
    ) -> tokio::sync::broadcast::Receiver<std::sync::Arc<ChangeNotice>> {
        self.changes.subscribe()
    }
}
