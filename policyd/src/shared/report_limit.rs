//! The per-member allowance of `POST /v1/report` held in [`crate::shared::Shared`]; what
//! acts on it is [`crate::reports`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Per-member token buckets: `burst` reports at once, refilled at `per_minute`.
#[derive(Debug, Default)]
pub(crate) struct ReportLimit {
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl ReportLimit {
    /// Takes one report of `member`'s allowance; else the seconds until one is back.
    pub(crate) fn take(&self, member: &str, burst: u32, per_minute: u32) -> Result<(), u64> {
        let now = Instant::now();
        let rate = f64::from(per_minute) / 60.0;
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let b = buckets.entry(member.to_string()).or_insert(Bucket {
            tokens: f64::from(burst),
            at: now,
        });
        let elapsed = now.duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * rate).min(f64::from(burst));
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            Err(((1.0 - b.tokens) / rate).ceil().max(1.0) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_per_member() {
        let limit = ReportLimit::default();
        for _ in 0..3 {
            assert!(limit.take("alpha", 3, 1).is_ok());
        }
        let wait = limit.take("alpha", 3, 1).expect_err("over the burst");
        assert!((1..=60).contains(&wait), "{wait}");
        assert!(limit.take("beta", 3, 1).is_ok());
    }
}
