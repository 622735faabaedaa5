//! Hybrid logical clocks: physical milliseconds plus a counter plus the writing device.
//!
//! A clock orders every write in the system: first by wall time, then by counter, then by node
//! (the device id) as a deterministic tie-break, so two writes never compare equal unless they
//! are the same write. The string form sorts the same way as the clock itself.

use std::{cmp::Ordering, fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// One point in hybrid logical time.
///
/// Serialised as `"<wall_ms:13 digits>-<counter:6 digits>-<node>"`, e.g.
/// `"1796016342000-000003-0192f8a4c1d27b3e9a5b6c7d8e9f0a1b"`. Do not change: stored and on the wire.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Hlc {
    /// Milliseconds since the Unix epoch, as the writer's clock saw them (or later).
    pub wall_ms: u64,
    /// Orders writes within one millisecond.
    pub counter: u32,
    /// The writing device, the final tie-break. Lower-case, no dashes.
    pub node: String,
}

/// Largest wall time a clock may carry: 9,999,999,999,999 ms (the year 2286), so that the
/// 13-digit string form stays fixed width and sorts.
pub const MAX_WALL_MS: u64 = 9_999_999_999_999;
/// Largest counter value: 6 digits.
pub const MAX_COUNTER: u32 = 999_999;

impl Hlc {
    /// A clock at the given time with counter 0.
    pub fn new(wall_ms: u64, counter: u32, node: impl Into<String>) -> Self {
        Self {
            wall_ms,
            counter,
            node: node.into(),
        }
    }

    /// The clock a server stores for a write that claims `self`: never later than
    /// `now_ms + max_skew_ms`. A phone whose date is set to next year would otherwise win every
    /// conflict until next year; bounded, its writes still order after everything it has seen.
    pub fn bounded(&self, now_ms: u64, max_skew_ms: u64) -> Hlc {
        let limit = now_ms.saturating_add(max_skew_ms);
        if self.wall_ms <= limit {
            self.clone()
        } else {
            Hlc::new(limit, self.counter, self.node.clone())
        }
    }
}

impl Ord for Hlc {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.wall_ms, self.counter, &self.node).cmp(&(other.wall_ms, other.counter, &other.node))
    }
}

impl PartialOrd for Hlc {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Hlc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:013}-{:06}-{}", self.wall_ms, self.counter, self.node)
    }
}

/// Why a clock string was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseHlcError(pub &'static str);

impl fmt::Display for ParseHlcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid clock: {}", self.0)
    }
}

impl std::error::Error for ParseHlcError {}

impl FromStr for Hlc {
    type Err = ParseHlcError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, '-');
        let (Some(wall), Some(counter), Some(node)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(ParseHlcError("expected <wall_ms>-<counter>-<node>"));
        };
        if wall.len() != 13 || !wall.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseHlcError("wall_ms must be 13 digits"));
        }
        if counter.len() != 6 || !counter.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ParseHlcError("counter must be 6 digits"));
        }
        if node.is_empty() || node.len() > 64 || !node.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(ParseHlcError("node must be 1 to 64 letters or digits"));
        }
        Ok(Hlc {
            wall_ms: wall.parse().map_err(|_| ParseHlcError("wall_ms"))?,
            counter: counter.parse().map_err(|_| ParseHlcError("counter"))?,
            // Upper-case is read as lower-case (Swift's `uuidString` is upper-case), so clocks
            // from one device compare equal however it spells its id.
            node: node.to_ascii_lowercase(),
        })
    }
}

impl Serialize for Hlc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hlc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// A device's clock: issues increasing timestamps and moves forward past every clock it sees.
#[derive(Debug, Clone)]
pub struct Clock {
    last: Hlc,
}

impl Clock {
    /// A clock for `node` that has issued nothing yet.
    pub fn new(node: impl Into<String>) -> Self {
        Self {
            last: Hlc::new(0, 0, node),
        }
    }

    /// The latest timestamp issued or observed.
    pub fn last(&self) -> &Hlc {
        &self.last
    }

    /// A new timestamp for a local write at physical time `now_ms`: later than every timestamp
    /// this clock issued or observed.
    pub fn tick(&mut self, now_ms: u64) -> Hlc {
        if now_ms > self.last.wall_ms {
            self.last.wall_ms = now_ms.min(MAX_WALL_MS);
            self.last.counter = 0;
        } else if self.last.counter < MAX_COUNTER {
            self.last.counter += 1;
        } else {
            // A million writes in one millisecond: borrow the next millisecond.
            self.last.wall_ms += 1;
            self.last.counter = 0;
        }
        self.last.clone()
    }

    /// Moves the clock past a timestamp received from elsewhere (a pulled record, the server's
    /// clock), so that the next local write orders after it.
    pub fn observe(&mut self, remote: &Hlc) {
        if (remote.wall_ms, remote.counter) > (self.last.wall_ms, self.last.counter) {
            self.last.wall_ms = remote.wall_ms;
            self.last.counter = remote.counter;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_string_form_round_trips_and_sorts_like_the_clock() {
        let a = Hlc::new(1_700_000_000_000, 2, "dev1");
        let b = Hlc::new(1_700_000_000_000, 10, "dev0");
        assert_eq!(a.to_string(), "1700000000000-000002-dev1");
        assert_eq!(a.to_string().parse::<Hlc>().unwrap(), a);
        assert!(a < b);
        assert!(a.to_string() < b.to_string());
    }

    #[test]
    fn bad_strings_are_rejected() {
        for bad in [
            "",
            "1-2-3",
            "1700000000000-000002-",
            "1700000000000-2-dev",
            "1700000000000-000002-de-v",
            "1700000000000-000002-dév",
        ] {
            assert!(bad.parse::<Hlc>().is_err(), "{bad}");
        }
    }

    #[test]
    fn an_upper_case_node_reads_as_the_same_device() {
        let upper: Hlc = "1700000000000-000002-0193F4A2DEV".parse().unwrap();
        let lower: Hlc = "1700000000000-000002-0193f4a2dev".parse().unwrap();
        assert_eq!(upper, lower);
        assert_eq!(upper.to_string(), "1700000000000-000002-0193f4a2dev");
    }

    #[test]
    fn ticks_increase_even_when_the_wall_clock_goes_back() {
        let mut clock = Clock::new("a");
        let first = clock.tick(1000);
        let second = clock.tick(900);
        let third = clock.tick(1000);
        assert!(first < second && second < third);
    }

    #[test]
    fn observing_a_later_clock_makes_the_next_tick_later_still() {
        let mut behind = Clock::new("a");
        behind.tick(1000);
        let remote = Hlc::new(5000, 7, "b");
        behind.observe(&remote);
        assert!(behind.tick(1001) > remote);
    }

    #[test]
    fn a_clock_from_the_future_is_bounded() {
        let next_year = Hlc::new(1_000_000 + 365 * 86_400_000, 0, "a");
        let bounded = next_year.bounded(1_000_000, 60_000);
        assert_eq!(bounded.wall_ms, 1_060_000);
        let honest = Hlc::new(1_000_000, 0, "a");
        assert_eq!(honest.bounded(1_000_000, 60_000), honest);
    }
}
