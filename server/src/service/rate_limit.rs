//! Fixed-window attempt counters for login, enrolment and device linking.
//!
//! Counters live in the process: with several replicas each replica counts on its own, which
//! multiplies the limit by the replica count but still stops online guessing.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

/// Counts attempts per key in fixed windows.
pub struct RateLimiter {
    limit: u32,
    window: Duration,
    windows: Mutex<HashMap<String, (Instant, u32)>>,
}

impl RateLimiter {
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit,
            window,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one attempt for `key`. `Err(retry_after)` once the key is over its limit.
    pub fn check(&self, key: &str, now: Instant) -> Result<(), Duration> {
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        // Forget finished windows now and then, so the map does not grow with every address seen.
        if windows.len() > 10_000 {
            windows.retain(|_, (start, _)| now.duration_since(*start) < self.window);
        }
        let entry = windows.entry(key.to_owned()).or_insert((now, 0));
        if now.duration_since(entry.0) >= self.window {
            *entry = (now, 0);
        }
        if entry.1 >= self.limit {
            let retry_after = self.window - now.duration_since(entry.0);
            // Round up: "retry after 0 seconds" would invite an immediate retry that fails.
            return Err(Duration::from_secs(retry_after.as_secs().max(1)));
        }
        entry.1 += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_over_the_limit_are_refused_until_the_window_ends() {
        let limiter = RateLimiter::new(2, Duration::from_secs(60));
        let start = Instant::now();
        assert!(limiter.check("a", start).is_ok());
        assert!(limiter.check("a", start).is_ok());
        let retry = limiter
            .check("a", start + Duration::from_secs(10))
            .unwrap_err();
        assert_eq!(retry, Duration::from_secs(50));
        assert!(limiter.check("b", start).is_ok(), "keys are counted apart");
        assert!(limiter.check("a", start + Duration::from_secs(60)).is_ok());
    }
}
