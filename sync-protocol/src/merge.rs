//! Field-level last-writer-wins merge.
//!
//! A record is a map from field name to `(value, clock)`. Merging two versions of a record keeps,
//! for every field, the value with the later clock. This is a state-based CRDT: [`merge`] is
//! commutative, associative and idempotent (the property tests in this module show it), so every
//! replica that has seen the same writes holds the same record, whatever order they arrived in.
//!
//! Deletion is the field [`DELETED`] set to `true`; it merges like any other field.
//!
//! A *conflict* is a write that was made without seeing the value it competes with: the
//! mutation's `base` clock for a field differs from the clock stored for that field. Its losing
//! value is reported so that the server can keep it for the record's owner.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::hlc::Hlc;

/// The field that marks a record deleted (a tombstone).
pub const DELETED: &str = "deleted";

/// A field's value with the clock of the write that set it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stamped {
    pub value: Value,
    pub clock: Hlc,
}

/// A record's fields with their clocks.
pub type RecordState = BTreeMap<String, Stamped>;

/// Which of two stamped values wins: the later clock; for the same clock (which only happens when
/// replaying the same write) the larger value, so the choice never depends on argument order.
fn wins(candidate: &Stamped, incumbent: &Stamped) -> bool {
    match candidate.clock.cmp(&incumbent.clock) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => value_order(&candidate.value) > value_order(&incumbent.value),
    }
}

fn value_order(value: &Value) -> String {
    // serde_json's map is ordered (BTreeMap), so this form is canonical.
    value.to_string()
}

/// Merges two states of one record field by field.
pub fn merge(a: &RecordState, b: &RecordState) -> RecordState {
    let mut merged = a.clone();
    for (field, theirs) in b {
        match merged.get(field) {
            Some(ours) if !wins(theirs, ours) => {}
            _ => {
                merged.insert(field.clone(), theirs.clone());
            }
        }
    }
    merged
}

/// A write that lost, or won over a value its writer had not seen.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conflict {
    pub field: String,
    /// The value that is now in the record.
    pub winner: Stamped,
    /// The value that was overruled; kept so that its author can see it and act.
    pub loser: Stamped,
}

/// The outcome of applying one mutation to a stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Applied {
    pub state: RecordState,
    /// Fields where the mutation and the stored record were written without seeing each other.
    pub conflicts: Vec<Conflict>,
    /// Whether anything in the record changed.
    pub changed: bool,
}

/// Applies a mutation's fields, all written at `clock`, to the stored state of a record.
///
/// `base` holds, per field, the clock of the value the writer saw when editing it (absent for a
/// field the writer had never seen). A stored value with another clock was written concurrently:
/// whichever is later wins, and the other is reported as a conflict (unless both are equal).
pub fn apply(
    stored: &RecordState,
    fields: &BTreeMap<String, Value>,
    clock: &Hlc,
    base: &BTreeMap<String, Hlc>,
) -> Applied {
    let incoming: RecordState = fields
        .iter()
        .map(|(field, value)| {
            (
                field.clone(),
                Stamped {
                    value: value.clone(),
                    clock: clock.clone(),
                },
            )
        })
        .collect();
    let state = merge(stored, &incoming);
    let mut conflicts = Vec::new();
    for (field, theirs) in &incoming {
        let Some(ours) = stored.get(field) else {
            continue;
        };
        let concurrent = base.get(field) != Some(&ours.clock);
        if concurrent && ours.clock != theirs.clock && ours.value != theirs.value {
            let (winner, loser) = if wins(theirs, ours) {
                (theirs, ours)
            } else {
                (ours, theirs)
            };
            conflicts.push(Conflict {
                field: field.clone(),
                winner: winner.clone(),
                loser: loser.clone(),
            });
        }
    }
    let changed = &state != stored;
    Applied {
        state,
        conflicts,
        changed,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn stamped(value: Value, wall: u64, node: &str) -> Stamped {
        Stamped {
            value,
            clock: Hlc::new(wall, 0, node),
        }
    }

    #[test]
    fn the_later_write_wins_per_field() {
        let a = RecordState::from([
            ("notes".into(), stamped(json!("tablet"), 20, "t")),
            ("place".into(), stamped(json!("Wijkcentrum"), 5, "t")),
        ]);
        let b = RecordState::from([
            ("notes".into(), stamped(json!("phone"), 10, "p")),
            ("place".into(), stamped(json!("Buurthuis"), 15, "p")),
        ]);
        let merged = merge(&a, &b);
        assert_eq!(merged["notes"].value, json!("tablet"));
        assert_eq!(merged["place"].value, json!("Buurthuis"));
    }

    #[test]
    fn a_concurrent_losing_edit_is_reported_as_a_conflict() {
        let stored = RecordState::from([("notes".into(), stamped(json!("tablet"), 20, "t"))]);
        let fields = BTreeMap::from([("notes".to_owned(), json!("phone"))]);
        // The phone edited the notes offline without having seen the tablet's edit.
        let applied = apply(&stored, &fields, &Hlc::new(10, 0, "p"), &BTreeMap::new());
        assert!(!applied.changed);
        assert_eq!(applied.state["notes"].value, json!("tablet"));
        assert_eq!(applied.conflicts.len(), 1);
        assert_eq!(applied.conflicts[0].loser.value, json!("phone"));
    }

    #[test]
    fn an_edit_made_over_the_stored_value_is_no_conflict() {
        let stored = RecordState::from([("notes".into(), stamped(json!("v1"), 10, "t"))]);
        let fields = BTreeMap::from([("notes".to_owned(), json!("v2"))]);
        let base = BTreeMap::from([("notes".to_owned(), Hlc::new(10, 0, "t"))]);
        let applied = apply(&stored, &fields, &Hlc::new(11, 0, "p"), &base);
        assert!(applied.changed);
        assert!(applied.conflicts.is_empty());
        assert_eq!(applied.state["notes"].value, json!("v2"));
    }

    #[test]
    fn replaying_a_mutation_changes_nothing() {
        let fields = BTreeMap::from([("notes".to_owned(), json!("x"))]);
        let clock = Hlc::new(11, 0, "p");
        let once = apply(&RecordState::new(), &fields, &clock, &BTreeMap::new());
        let twice = apply(&once.state, &fields, &clock, &BTreeMap::new());
        assert!(!twice.changed);
        assert!(twice.conflicts.is_empty());
        assert_eq!(twice.state, once.state);
    }

    fn arb_state() -> impl Strategy<Value = RecordState> {
        let field = prop::sample::select(vec!["notes", "place", "status", DELETED]);
        let value = prop_oneof![
            any::<bool>().prop_map(Value::from),
            "[a-c]{0,2}".prop_map(Value::from),
            Just(Value::Null),
        ];
        let clock = (0u64..4, 0u32..2, prop::sample::select(vec!["a", "b"]))
            .prop_map(|(wall, counter, node)| Hlc::new(wall, counter, node));
        prop::collection::btree_map(
            field.prop_map(str::to_owned),
            (value, clock).prop_map(|(value, clock)| Stamped { value, clock }),
            0..4,
        )
    }

    proptest! {
        #[test]
        fn merge_is_commutative(a in arb_state(), b in arb_state()) {
            prop_assert_eq!(merge(&a, &b), merge(&b, &a));
        }

        #[test]
        fn merge_is_associative(a in arb_state(), b in arb_state(), c in arb_state()) {
            prop_assert_eq!(merge(&merge(&a, &b), &c), merge(&a, &merge(&b, &c)));
        }

        #[test]
        fn merge_is_idempotent(a in arb_state(), b in arb_state()) {
            prop_assert_eq!(merge(&a, &a), a.clone());
            let ab = merge(&a, &b);
            prop_assert_eq!(merge(&ab, &b), ab.clone());
        }

        #[test]
        fn applying_writes_in_any_order_converges(
            writes in prop::collection::vec(arb_state(), 1..6),
        ) {
            let forward = writes.iter().fold(RecordState::new(), |acc, w| merge(&acc, w));
            let backward = writes.iter().rev().fold(RecordState::new(), |acc, w| merge(&acc, w));
            prop_assert_eq!(forward, backward);
        }
    }
}
