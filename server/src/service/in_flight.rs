//! Per-client limits on things in progress: pushes per participant, live streams per device. One
//! client may not take what every client shares (push turns, connections, memory).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use uuid::Uuid;

/// How many of something each key has in progress.
#[derive(Default, Clone)]
pub struct InFlight {
    counts: Arc<Mutex<HashMap<Uuid, usize>>>,
}

/// One thing in progress; dropping it ends it.
pub struct InFlightGuard {
    counts: Arc<Mutex<HashMap<Uuid, usize>>>,
    key: Uuid,
}

impl InFlight {
    /// Starts one more for `key`, unless it already has `max` in progress.
    pub fn try_enter(&self, key: Uuid, max: usize) -> Option<InFlightGuard> {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let count = counts.entry(key).or_default();
        if *count >= max {
            return None;
        }
        *count += 1;
        Some(InFlightGuard {
            counts: self.counts.clone(),
            key,
        })
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = counts.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// Each device's open streams, oldest first: a ticket and the signal that ends the stream.
type OpenStreams = Arc<Mutex<HashMap<Uuid, Vec<(u64, Arc<tokio::sync::Notify>)>>>>;

/// The live streams each device holds. A device that opens one more than it may loses its oldest:
/// on a phone the newest connection is the live one, and the oldest is likely a dead connection
/// whose end the server has not noticed yet.
#[derive(Default, Clone)]
pub struct StreamSlots {
    devices: OpenStreams,
    next_ticket: Arc<std::sync::atomic::AtomicU64>,
}

/// One stream's place; dropping it frees the place, `replaced` fires when a newer stream took it.
pub struct StreamSlot {
    devices: OpenStreams,
    device: Uuid,
    ticket: u64,
    pub replaced: Arc<tokio::sync::Notify>,
}

impl StreamSlots {
    /// A place for a new stream of `device`, ending its oldest when it already holds `max`.
    pub fn open(&self, device: Uuid, max: usize) -> StreamSlot {
        let ticket = self
            .next_ticket
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let replaced = Arc::new(tokio::sync::Notify::new());
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let streams = devices.entry(device).or_default();
        while streams.len() >= max.max(1) {
            let (_, oldest) = streams.remove(0);
            // Stored as a permit if the stream is not waiting right now.
            oldest.notify_one();
        }
        streams.push((ticket, replaced.clone()));
        StreamSlot {
            devices: self.devices.clone(),
            device,
            ticket,
            replaced,
        }
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut devices = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(streams) = devices.get_mut(&self.device) {
            streams.retain(|(ticket, _)| *ticket != self.ticket);
            if streams.is_empty() {
                devices.remove(&self.device);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_at_most_its_share_and_gets_it_back() {
        let in_flight = InFlight::default();
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let first = in_flight.try_enter(a, 2).unwrap();
        let _second = in_flight.try_enter(a, 2).unwrap();
        assert!(in_flight.try_enter(a, 2).is_none());
        assert!(
            in_flight.try_enter(b, 2).is_some(),
            "others are not affected"
        );
        drop(first);
        assert!(in_flight.try_enter(a, 2).is_some());
    }

    #[tokio::test]
    async fn a_device_over_its_stream_limit_loses_its_oldest() {
        let slots = StreamSlots::default();
        let device = Uuid::now_v7();
        let oldest = slots.open(device, 2);
        let middle = slots.open(device, 2);
        let other_device = slots.open(Uuid::now_v7(), 2);
        let _newest = slots.open(device, 2);
        tokio::time::timeout(
            std::time::Duration::from_secs(1),
            oldest.replaced.notified(),
        )
        .await
        .expect("the oldest is told");
        for survivor in [&middle, &other_device] {
            let told = tokio::time::timeout(
                std::time::Duration::from_millis(50),
                survivor.replaced.notified(),
            )
            .await;
            assert!(told.is_err(), "only the oldest is replaced");
        }
        drop(middle);
        let _again = slots.open(device, 2);
    }
}
