//! Globally unique ids for objects that the control silo maps across regions.
//!
//! ```text
//!  63 bits: [ 41 bits ms since 2024-01-01 | 12 bits region snowflake_id | 10 bits sequence ]
//! ```
//!
//! Two regions can never hand out the same id because their `snowflake_id`s differ (the
//! directory refuses duplicates). Within a process the sequence makes ids unique per
//! millisecond; replicas of one region may still collide in rare cases, which the primary key
//! rejects and the caller retries with a fresh id.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// 2024-01-01T00:00:00Z in milliseconds since the Unix epoch.
pub const EPOCH_MS: u64 = 1_704_067_200_000;
const REGION_BITS: u32 = 12;
const SEQUENCE_BITS: u32 = 10;
const SEQUENCE_MASK: u64 = (1 << SEQUENCE_BITS) - 1;

/// Builds ids for one region.
#[derive(Debug)]
pub struct SnowflakeGenerator {
    region: u16,
    last: Mutex<(u64, u64)>,
}

/// The parts an id was built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SnowflakeParts {
    pub millis: u64,
    pub region: u16,
    pub sequence: u64,
}

impl SnowflakeGenerator {
    /// A generator for the region with this `snowflake_id` (only the low 12 bits are used).
    pub fn new(region_snowflake_id: u16) -> Self {
        Self {
            region: region_snowflake_id & ((1 << REGION_BITS) - 1),
            last: Mutex::new((0, 0)),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> i64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
            .saturating_sub(EPOCH_MS);
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (mut millis, mut sequence) = *last;
        if now > millis {
            millis = now;
            sequence = 0;
        } else {
            sequence += 1;
            if sequence > SEQUENCE_MASK {
                // Borrow the next millisecond instead of waiting.
                millis += 1;
                sequence = 0;
            }
        }
        *last = (millis, sequence);
        compose(SnowflakeParts {
            millis,
            region: self.region,
            sequence,
        })
    }
}

/// Build an id from its parts.
pub fn compose(parts: SnowflakeParts) -> i64 {
    let millis = parts.millis & ((1 << 41) - 1);
    let value = (millis << (REGION_BITS + SEQUENCE_BITS))
        | (u64::from(parts.region) << SEQUENCE_BITS)
        | (parts.sequence & SEQUENCE_MASK);
    // 41 + 12 + 10 = 63 bits: always a positive i64.
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// Split an id into its parts.
pub fn decompose(id: i64) -> SnowflakeParts {
    let value = id.unsigned_abs();
    SnowflakeParts {
        millis: value >> (REGION_BITS + SEQUENCE_BITS),
        region: u16::try_from((value >> SEQUENCE_BITS) & ((1 << REGION_BITS) - 1)).unwrap_or(0),
        sequence: value & SEQUENCE_MASK,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn ids_are_unique_increasing_and_carry_the_region() {
        let generator = SnowflakeGenerator::new(2);
        let ids: Vec<i64> = (0..5000).map(|_| generator.next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids.iter().all(|id| decompose(*id).region == 2 && *id > 0));
        let other = SnowflakeGenerator::new(3);
        let theirs: HashSet<i64> = (0..5000).map(|_| other.next_id()).collect();
        assert!(ids.iter().all(|id| !theirs.contains(id)));
    }

    #[test]
    fn compose_and_decompose_round_trip() {
        let parts = SnowflakeParts {
            millis: 123_456_789,
            region: 4095,
            sequence: 1023,
        };
        assert_eq!(decompose(compose(parts)), parts);
    }
}
