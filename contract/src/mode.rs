//! The silo mode a process runs in.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Which silo a process serves. `MONOLITH` serves control and one region together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SiloMode {
    Control,
    Region,
    Monolith,
}

impl SiloMode {
    pub const ALL: [SiloMode; 3] = [SiloMode::Control, SiloMode::Region, SiloMode::Monolith];

    pub fn as_str(self) -> &'static str {
        match self {
            SiloMode::Control => "CONTROL",
            SiloMode::Region => "REGION",
            SiloMode::Monolith => "MONOLITH",
        }
    }

    /// Whether a process in this mode serves region-silo data (orgs, projects, events).
    pub fn serves_region(self) -> bool {
        matches!(self, SiloMode::Region | SiloMode::Monolith)
    }

    /// Whether a process in this mode serves control-silo data (directory, users, gateway).
    pub fn serves_control(self) -> bool {
        matches!(self, SiloMode::Control | SiloMode::Monolith)
    }
}

impl fmt::Display for SiloMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The value was not one of `CONTROL`, `REGION`, `MONOLITH`.
#[derive(Debug, thiserror::Error)]
#[error("unknown silo mode {0:?}: expected CONTROL, REGION or MONOLITH")]
pub struct UnknownSiloMode(pub String);

impl FromStr for SiloMode {
    type Err = UnknownSiloMode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_uppercase().as_str() {
            "CONTROL" => Ok(SiloMode::Control),
            "REGION" => Ok(SiloMode::Region),
            "MONOLITH" => Ok(SiloMode::Monolith),
            _ => Err(UnknownSiloMode(s.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_rejects_unknown() {
        assert_eq!("region".parse::<SiloMode>().ok(), Some(SiloMode::Region));
        for mode in SiloMode::ALL {
            assert_eq!(mode.as_str().parse::<SiloMode>().ok(), Some(mode));
        }
        let err = "SILO".parse::<SiloMode>().unwrap_err();
        assert!(err.to_string().contains("CONTROL, REGION or MONOLITH"));
    }

    #[test]
    fn monolith_serves_both_silos() {
        assert!(SiloMode::Monolith.serves_region() && SiloMode::Monolith.serves_control());
        assert!(!SiloMode::Control.serves_region());
        assert!(!SiloMode::Region.serves_control());
    }
}
