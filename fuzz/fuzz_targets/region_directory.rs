//! The region directory format (`SENTRY_REGION_CONFIG`, also the directory document the
//! operator writes and control serves) and how the variable's value is classified.
//!
//! Checks: a directory that parses is sorted by name with unique names and snowflake ids and
//! every entry passes `check_entry`; `to_json` parses back to the same directory; lookups find
//! every entry; a JSON list of entries is accepted exactly when every entry passes
//! `check_entry` and names and ids are unique; `RegionConfigSource::parse` keeps inline text
//! and paths as given (trimmed).

#![no_main]

use std::collections::HashSet;
use std::path::PathBuf;

use libfuzzer_sys::fuzz_target;
use silo_contract::directory::check_entry;
use silo_contract::{RegionConfigSource, RegionDirectory, RegionInfo};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };

    match RegionConfigSource::parse(text) {
        Ok(RegionConfigSource::Inline(json)) => {
            assert_eq!(json, text.trim());
            assert!(!json.starts_with('/') && !json.starts_with("file://"));
        }
        Ok(RegionConfigSource::File(path)) => {
            let t = text.trim();
            assert_eq!(path, PathBuf::from(t.strip_prefix("file://").unwrap_or(t)));
        }
        Err(_) => {}
    }

    let parsed = RegionDirectory::from_json(text);
    if let Ok(dir) = &parsed {
        let regions = dir.regions();
        assert!(
            regions.windows(2).all(|w| w[0].name < w[1].name),
            "sorted, unique names"
        );
        let ids: HashSet<u16> = regions.iter().map(|r| r.snowflake_id).collect();
        assert_eq!(ids.len(), regions.len(), "unique snowflake ids");
        for region in regions {
            check_entry(region).expect("every entry is valid");
            assert_eq!(dir.get(&region.name), Some(region));
        }
        assert_eq!(dir.len(), regions.len());
        let again = RegionDirectory::from_json(&dir.to_json()).expect("to_json parses");
        assert_eq!(&again, dir);
        assert_eq!(again.to_json(), dir.to_json());
    }

    // Accepted exactly when every entry is valid and names and ids are unique.
    if let Ok(entries) = serde_json::from_str::<Vec<RegionInfo>>(text) {
        let names: HashSet<&str> = entries.iter().map(|r| r.name.as_str()).collect();
        let ids: HashSet<u16> = entries.iter().map(|r| r.snowflake_id).collect();
        let valid = entries.iter().all(|r| check_entry(r).is_ok())
            && names.len() == entries.len()
            && ids.len() == entries.len();
        assert_eq!(parsed.is_ok(), valid, "{:?}", parsed.err());
        let built = RegionDirectory::new(entries);
        assert_eq!(built.is_ok(), valid);
    } else {
        assert!(parsed.is_err());
    }
});
