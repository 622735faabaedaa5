//! The synced collections: their fields, types, limits and who may write them.
//!
//! Participants write the collections in [`COLLECTIONS`]; the server also sends read-only
//! collections (`cohorts`, `cohort_days`, `assignments`) that only it changes. Every field of a
//! writable collection is optional in a mutation: a mutation carries just the fields it sets.

use serde_json::Value;
use uuid::Uuid;

/// The type and limits of one field. `null` is allowed where [`FieldSpec::nullable`] says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    /// A string of at most `max_chars` characters.
    Text { max_chars: usize },
    /// `true` or `false`.
    Bool,
    /// A calendar date, `YYYY-MM-DD`.
    Date,
    /// An instant, RFC 3339 (`2027-01-12T09:30:00Z`).
    Timestamp,
    /// A UUID string.
    Uuid,
    /// Any JSON array or object of at most `max_bytes` when serialised.
    Json { max_bytes: usize },
    /// One of the listed strings.
    Choice(&'static [&'static str]),
    /// A whole number in `min..=max`.
    Integer { min: i64, max: i64 },
    /// A SHA-256 digest: 64 lowercase hexadecimal characters.
    Sha256,
    /// A local time of day, `HH:MM:SS` (the cohort's time zone), in read-only collections.
    LocalTime,
}

/// One field of a collection.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: FieldType,
    pub nullable: bool,
    /// Whether the other party of a shared feedback exercise may write it (their reaction).
    pub counterpart_writable: bool,
    /// Whether it keeps its first value: a later mutation may repeat it but not change it.
    pub immutable: bool,
    /// Whether only the server writes it (devices read it; a mutation setting it is refused).
    pub server_written: bool,
}

/// How a record's id is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    /// Any UUID the client generates (UUID v7 recommended): interviews, feedback.
    ClientGenerated,
    /// One record per participant and linked record (the UUID in the named field):
    /// [`linked_record_id`]. Assignment work (per assignment), read receipts (per announcement).
    Linked(&'static str),
    /// One record per participant and cohort: [`cohort_record_id`].
    PerCohort,
    /// One record per participant: [`user_record_id`].
    PerUser,
}

/// A collection participants write.
#[derive(Debug, Clone, Copy)]
pub struct CollectionSpec {
    pub name: &'static str,
    pub identity: Identity,
    pub fields: &'static [FieldSpec],
}

const fn field(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        nullable: true,
        counterpart_writable: false,
        immutable: false,
        server_written: false,
    }
}

const fn required(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        nullable: false,
        ..field(name, ty)
    }
}

const fn fixed(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        immutable: true,
        ..required(name, ty)
    }
}

const SHORT: FieldType = FieldType::Text { max_chars: 200 };
const LONG: FieldType = FieldType::Text { max_chars: 20_000 };
const MEDIUM: FieldType = FieldType::Text { max_chars: 5_000 };
const DOCUMENT: FieldType = FieldType::Json { max_bytes: 65_536 };

/// The field that links a record to a between-day assignment of the cohort.
pub const ASSIGNMENT_FIELD: &str = "assignment_id";
/// The field naming the cohort member a feedback exercise was done with.
pub const COUNTERPART_FIELD: &str = "counterpart_user_id";
/// The field by which the owner shares a feedback exercise with that member.
pub const SHARED_FIELD: &str = "shared";

/// Interviews in the field: who, when, where, questions and answers, notes, insights.
/// `interviewee_name` may only be set while `name_consent` is `true`.
pub const INTERVIEWS: CollectionSpec = CollectionSpec {
    name: "interviews",
    identity: Identity::ClientGenerated,
    fields: &[
        field(ASSIGNMENT_FIELD, FieldType::Uuid),
        field("interviewee_role", SHORT),
        field("interviewee_organisation", SHORT),
        field("interviewee_name", SHORT),
        required("name_consent", FieldType::Bool),
        field("interviewed_on", FieldType::Date),
        field("place", SHORT),
        field("questions", DOCUMENT),
        field("notes", LONG),
        field("insights", LONG),
        required("status", FieldType::Choice(&["draft", "done"])),
    ],
};

/// Feedback given or received (observation, effect, wish) and the receiver's reaction. With a
/// cohort member as counterpart and `shared` true, both see it and the counterpart may write
/// `reaction`.
pub const FEEDBACK_EXERCISES: CollectionSpec = CollectionSpec {
    name: "feedback_exercises",
    identity: Identity::ClientGenerated,
    fields: &[
        required("direction", FieldType::Choice(&["given", "received"])),
        field(COUNTERPART_FIELD, FieldType::Uuid),
        field("counterpart_name", SHORT),
        required(SHARED_FIELD, FieldType::Bool),
        field("happened_on", FieldType::Date),
        field("observation", MEDIUM),
        field("effect", MEDIUM),
        field("wish", MEDIUM),
        FieldSpec {
            counterpart_writable: true,
            ..field("reaction", MEDIUM)
        },
    ],
};

/// A participant's work on one between-day assignment: done or not, what was applied,
/// reflection.
pub const ASSIGNMENT_WORK: CollectionSpec = CollectionSpec {
    name: "assignment_work",
    identity: Identity::Linked(ASSIGNMENT_FIELD),
    fields: &[
        required(ASSIGNMENT_FIELD, FieldType::Uuid),
        required("done", FieldType::Bool),
        field("applied", LONG),
        field("reflection", LONG),
    ],
};

/// The outline and material of a participant's Day 6 harvest presentation.
pub const HARVESTS: CollectionSpec = CollectionSpec {
    name: "harvests",
    identity: Identity::PerCohort,
    fields: &[
        field("outline", LONG),
        field("material", DOCUMENT),
        required("status", FieldType::Choice(&["draft", "ready"])),
    ],
};

const COLOURS: &[&str] = &["blue", "green", "yellow", "red"];

/// A participant's personal profile, e.g. their Insights Discovery colours from day 1.
pub const PROFILES: CollectionSpec = CollectionSpec {
    name: "profiles",
    identity: Identity::PerUser,
    fields: &[
        field("insights_primary", FieldType::Choice(COLOURS)),
        field("insights_secondary", FieldType::Choice(COLOURS)),
        field("insights_scores", FieldType::Json { max_bytes: 2_048 }),
        field("about", MEDIUM),
    ],
};

/// The field linking a read receipt to its announcement.
pub const ANNOUNCEMENT_FIELD: &str = "announcement_id";

/// That a participant read an announcement in their inbox, and when.
pub const ANNOUNCEMENT_READS: CollectionSpec = CollectionSpec {
    name: "announcement_reads",
    identity: Identity::Linked(ANNOUNCEMENT_FIELD),
    fields: &[
        required(ANNOUNCEMENT_FIELD, FieldType::Uuid),
        required("read_at", FieldType::Timestamp),
    ],
};

/// The collection an attachment belongs to (`interviews`, `feedback_exercises` or `harvests`).
pub const PARENT_COLLECTION_FIELD: &str = "parent_collection";
/// The record an attachment belongs to.
pub const PARENT_ID_FIELD: &str = "parent_id";
/// An attachment's upload state, written by the server.
pub const ATTACHMENT_STATE_FIELD: &str = "state";
/// Before the bytes arrived and were verified.
pub const ATTACHMENT_PENDING: &str = "pending";
/// The bytes are stored and match `size` and `sha256`: they can be downloaded.
pub const ATTACHMENT_STORED: &str = "stored";
/// The collections whose records can carry attachments.
pub const ATTACHMENT_PARENTS: &[&str] = &["interviews", "feedback_exercises", "harvests"];

/// A file belonging to a record: a photo of a whiteboard, an interview recording, a PDF. The
/// record syncs like any other; its bytes are uploaded and downloaded separately (see
/// PROTOCOL.md, "Attachments"). Everything but the file name is fixed once created; `state` is
/// the server's: `pending` until the bytes arrived whole, then `stored`. Deleting the parent
/// record deletes its attachments.
pub const ATTACHMENTS: CollectionSpec = CollectionSpec {
    name: "attachments",
    identity: Identity::ClientGenerated,
    fields: &[
        fixed(
            PARENT_COLLECTION_FIELD,
            FieldType::Choice(ATTACHMENT_PARENTS),
        ),
        fixed(PARENT_ID_FIELD, FieldType::Uuid),
        required("file_name", SHORT),
        fixed("content_type", FieldType::Text { max_chars: 100 }),
        fixed(
            "size",
            FieldType::Integer {
                min: 1,
                max: i64::MAX,
            },
        ),
        fixed("sha256", FieldType::Sha256),
        FieldSpec {
            server_written: true,
            ..field(
                ATTACHMENT_STATE_FIELD,
                FieldType::Choice(&[ATTACHMENT_PENDING, ATTACHMENT_STORED]),
            )
        },
    ],
};

/// Every collection participants write, in the order the server stores them. Attachments come
/// after the records they belong to.
pub const COLLECTIONS: &[CollectionSpec] = &[
    INTERVIEWS,
    FEEDBACK_EXERCISES,
    ASSIGNMENT_WORK,
    HARVESTS,
    PROFILES,
    ANNOUNCEMENT_READS,
    ATTACHMENTS,
];

/// Collections only the server writes; they arrive in pulls like any other.
pub const READ_ONLY_COLLECTIONS: &[&str] =
    &["cohorts", "cohort_days", "assignments", "announcements"];

/// Text the server bounds elsewhere (or not at all).
const ANY_TEXT: FieldType = FieldType::Text {
    max_chars: usize::MAX,
};

const fn sent(name: &'static str, ty: FieldType) -> FieldSpec {
    FieldSpec {
        server_written: true,
        ..required(name, ty)
    }
}

/// What the read-only collections' records hold, in the order of [`READ_ONLY_COLLECTIONS`]:
/// every field is the server's and always present. The server's pull writes exactly these
/// (its tests check that they agree), and the OpenAPI document describes them from here.
pub const READ_ONLY_SPECS: &[CollectionSpec] = &[
    CollectionSpec {
        name: "cohorts",
        identity: Identity::ClientGenerated,
        fields: &[
            sent("name", ANY_TEXT),
            sent("organisation_id", FieldType::Uuid),
            sent("programme_id", FieldType::Uuid),
            sent("time_zone", ANY_TEXT),
        ],
    },
    CollectionSpec {
        name: "cohort_days",
        identity: Identity::ClientGenerated,
        fields: &[
            sent("day_number", FieldType::Integer { min: 1, max: 99 }),
            sent("title", SHORT),
            sent("description", MEDIUM),
            sent("date", FieldType::Date),
            sent("starts_at", FieldType::LocalTime),
            sent("ends_at", FieldType::LocalTime),
            sent("location", ANY_TEXT),
            sent("starts_at_utc", FieldType::Timestamp),
        ],
    },
    CollectionSpec {
        name: "assignments",
        identity: Identity::ClientGenerated,
        fields: &[
            sent("after_day", FieldType::Integer { min: 1, max: 99 }),
            sent("due_day", FieldType::Integer { min: 1, max: 99 }),
            sent(
                "kind",
                FieldType::Choice(&[
                    "assignment",
                    "apply_in_work",
                    "interview",
                    "harvest_presentation",
                ]),
            ),
            sent("title", SHORT),
            sent("description", MEDIUM),
        ],
    },
    CollectionSpec {
        name: "announcements",
        identity: Identity::ClientGenerated,
        fields: &[
            sent("author_id", FieldType::Uuid),
            sent("title", ANY_TEXT),
            sent("body", MEDIUM),
            sent("published_at", FieldType::Timestamp),
            sent("to_whole_cohort", FieldType::Bool),
        ],
    },
];

/// Finds a writable collection by name.
pub fn collection(name: &str) -> Option<&'static CollectionSpec> {
    COLLECTIONS.iter().find(|spec| spec.name == name)
}

impl CollectionSpec {
    /// A field by name.
    pub fn field(&self, name: &str) -> Option<&'static FieldSpec> {
        self.fields.iter().find(|field| field.name == name)
    }
}

/// Why a field value was refused. `code` is stable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub code: &'static str,
    pub message: String,
}

/// The years a date or timestamp in a record may have: wide for any programme, narrow enough for
/// every database's date types.
pub const RECORD_YEARS: std::ops::RangeInclusive<i32> = 1900..=2199;

/// Whether any string or key in a JSON value holds U+0000 (which PostgreSQL cannot store).
fn contains_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Array(items) => items.iter().any(contains_nul),
        Value::Object(map) => map
            .iter()
            .any(|(key, item)| key.contains('\0') || contains_nul(item)),
        _ => false,
    }
}

impl FieldSpec {
    /// Whether a deleted record (a tombstone) keeps this field on the server: references and
    /// flags, which decide who must learn of the deletion (the counterpart of shared feedback,
    /// the parent of an attachment), never content. Devices receive tombstones without fields.
    pub fn kept_in_tombstone(&self) -> bool {
        matches!(
            self.ty,
            FieldType::Bool | FieldType::Uuid | FieldType::Choice(_)
        )
    }

    /// Checks a value against the field's type and limits.
    pub fn validate(&self, value: &Value) -> Result<(), FieldError> {
        let invalid = |message: String| FieldError {
            code: "invalid_field",
            message,
        };
        if value.is_null() {
            return if self.nullable {
                Ok(())
            } else {
                Err(invalid(format!("{} must not be null", self.name)))
            };
        }
        match self.ty {
            FieldType::Text { max_chars } => {
                let text = value
                    .as_str()
                    .ok_or_else(|| invalid(format!("{} must be a string", self.name)))?;
                if text.contains('\0') {
                    return Err(invalid(format!(
                        "{} must not contain the NUL character (U+0000)",
                        self.name
                    )));
                }
                let chars = text.chars().count();
                if chars > max_chars {
                    return Err(FieldError {
                        code: "field_too_large",
                        message: format!(
                            "{} has {chars} characters; at most {max_chars} are allowed",
                            self.name
                        ),
                    });
                }
            }
            FieldType::Bool => {
                value
                    .as_bool()
                    .ok_or_else(|| invalid(format!("{} must be true or false", self.name)))?;
            }
            FieldType::Date => {
                use chrono::Datelike;
                value
                    .as_str()
                    .and_then(|text| chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
                    .filter(|date| RECORD_YEARS.contains(&date.year()))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{} must be a date, YYYY-MM-DD, in the years {}-{}",
                            self.name,
                            RECORD_YEARS.start(),
                            RECORD_YEARS.end()
                        ))
                    })?;
            }
            FieldType::Timestamp => {
                use chrono::Datelike;
                value
                    .as_str()
                    .and_then(|text| chrono::DateTime::parse_from_rfc3339(text).ok())
                    .filter(|at| RECORD_YEARS.contains(&at.year()))
                    .ok_or_else(|| {
                        invalid(format!(
                            "{} must be an RFC 3339 timestamp in the years {}-{}",
                            self.name,
                            RECORD_YEARS.start(),
                            RECORD_YEARS.end()
                        ))
                    })?;
            }
            FieldType::Uuid => {
                value
                    .as_str()
                    .and_then(|text| Uuid::parse_str(text).ok())
                    .ok_or_else(|| invalid(format!("{} must be a UUID", self.name)))?;
            }
            FieldType::Json { max_bytes } => {
                if !(value.is_array() || value.is_object()) {
                    return Err(invalid(format!("{} must be an array or object", self.name)));
                }
                if contains_nul(value) {
                    return Err(invalid(format!(
                        "{} must not contain the NUL character (U+0000)",
                        self.name
                    )));
                }
                let bytes = value.to_string().len();
                if bytes > max_bytes {
                    return Err(FieldError {
                        code: "field_too_large",
                        message: format!(
                            "{} takes {bytes} bytes; at most {max_bytes} are allowed",
                            self.name
                        ),
                    });
                }
            }
            FieldType::Choice(options) => {
                let text = value.as_str().unwrap_or_default();
                if !options.contains(&text) {
                    return Err(invalid(format!(
                        "{} must be one of {}",
                        self.name,
                        options.join(", ")
                    )));
                }
            }
            FieldType::Integer { min, max } => {
                let number = value
                    .as_i64()
                    .ok_or_else(|| invalid(format!("{} must be a whole number", self.name)))?;
                if !(min..=max).contains(&number) {
                    return Err(invalid(format!(
                        "{} must be between {min} and {max}",
                        self.name
                    )));
                }
            }
            FieldType::LocalTime => {
                value
                    .as_str()
                    .and_then(|text| chrono::NaiveTime::parse_from_str(text, "%H:%M:%S").ok())
                    .ok_or_else(|| invalid(format!("{} must be a time, HH:MM:SS", self.name)))?;
            }
            FieldType::Sha256 => {
                let text = value.as_str().unwrap_or_default();
                if text.len() != 64 || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                {
                    return Err(invalid(format!(
                        "{} must be a SHA-256 digest in 64 lowercase hexadecimal characters",
                        self.name
                    )));
                }
            }
        }
        Ok(())
    }
}

/// Namespace of the deterministic ids below (a fixed random UUID). Do not change: ids depend on it.
pub const ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f1c_2a9e_83d4_4b6f_9a70_1e2d_3c4b_5a69);

/// The id of a participant's record linked to another record (see [`Identity::Linked`]).
/// Deterministic, so two devices that start the same assignment offline write to one record
/// instead of creating two.
pub fn linked_record_id(collection: &str, user_id: Uuid, linked_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{collection}:{user_id}:{linked_id}").as_bytes(),
    )
}

/// The id of a participant's work on an assignment.
pub fn assignment_record_id(user_id: Uuid, assignment_id: Uuid) -> Uuid {
    linked_record_id(ASSIGNMENT_WORK.name, user_id, assignment_id)
}

/// The id of a participant's harvest in a cohort.
pub fn cohort_record_id(collection: &str, user_id: Uuid, cohort_id: Uuid) -> Uuid {
    Uuid::new_v5(
        &ID_NAMESPACE,
        format!("{collection}:{user_id}:{cohort_id}").as_bytes(),
    )
}

/// The id of a participant's profile.
pub fn user_record_id(collection: &str, user_id: Uuid) -> Uuid {
    Uuid::new_v5(&ID_NAMESPACE, format!("{collection}:{user_id}").as_bytes())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_checked_against_their_field() {
        let notes = INTERVIEWS.field("notes").unwrap();
        assert!(notes.validate(&json!("kort")).is_ok());
        assert!(notes.validate(&Value::Null).is_ok());
        assert_eq!(notes.validate(&json!(5)).unwrap_err().code, "invalid_field");
        let long = "x".repeat(20_001);
        assert_eq!(
            notes.validate(&json!(long)).unwrap_err().code,
            "field_too_large"
        );
        let status = INTERVIEWS.field("status").unwrap();
        assert!(status.validate(&json!("done")).is_ok());
        assert!(status.validate(&json!("finished")).is_err());
        assert!(status.validate(&Value::Null).is_err());
        let date = INTERVIEWS.field("interviewed_on").unwrap();
        assert!(date.validate(&json!("2027-02-29")).is_err());
        assert!(date.validate(&json!("2028-02-29")).is_ok());
    }

    #[test]
    fn attachment_fields_check_numbers_and_digests() {
        let size = ATTACHMENTS.field("size").unwrap();
        assert!(size.validate(&json!(40_000_000)).is_ok());
        assert!(size.validate(&json!(0)).is_err());
        assert!(size.validate(&json!(1.5)).is_err());
        assert!(size.validate(&json!("12")).is_err());
        let digest = ATTACHMENTS.field("sha256").unwrap();
        let good = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(digest.validate(&json!(good)).is_ok());
        assert!(digest.validate(&json!(good.to_uppercase())).is_err());
        assert!(digest.validate(&json!(&good[1..])).is_err());
        assert!(ATTACHMENTS.field("state").unwrap().server_written);
        assert!(ATTACHMENTS.field("size").unwrap().immutable);
        assert!(!ATTACHMENTS.field("file_name").unwrap().immutable);
    }

    #[test]
    fn deterministic_ids_are_stable_and_distinct() {
        let user = Uuid::from_u128(1);
        let assignment = Uuid::from_u128(2);
        assert_eq!(
            assignment_record_id(user, assignment),
            assignment_record_id(user, assignment)
        );
        assert_ne!(
            assignment_record_id(user, assignment),
            assignment_record_id(assignment, user)
        );
        // Frozen: clients compute these too.
        assert_eq!(
            assignment_record_id(user, assignment).to_string(),
            "e5d2b86f-f178-5cbb-9f9d-e55da6d47570"
        );
    }
}
