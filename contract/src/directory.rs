//! The region directory (`SENTRY_REGION_CONFIG`): a JSON list of [`RegionInfo`], inline or in a file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::region::{MAX_SNOWFLAKE_ID, RegionInfo, RegionNameError, validate_region_name};

/// Every region, sorted by name. Names and snowflake ids are unique.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RegionDirectory {
    regions: Vec<RegionInfo>,
}

/// Why a directory could not be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    #[error("SENTRY_REGION_CONFIG is not a JSON list of regions: {source}")]
    Json {
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot read region directory file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("region directory entry: {0}")]
    Name(#[from] RegionNameError),
    #[error("region {0:?} appears more than once in the region directory")]
    DuplicateName(String),
    #[error("regions {first:?} and {second:?} share snowflake_id {id}; each region needs its own")]
    DuplicateSnowflake {
        id: u16,
        first: String,
        second: String,
    },
    #[error("region {name:?} has snowflake_id {id}, above the maximum {MAX_SNOWFLAKE_ID}")]
    SnowflakeRange { name: String, id: u16 },
    #[error("region {0:?} has an empty address; give the base URL of its web service")]
    EmptyAddress(String),
    #[error(
        "region {name:?} has address {address:?}, which is not an http:// or https:// URL without spaces; give the base URL of its web service"
    )]
    InvalidAddress { name: String, address: String },
}

/// Check one entry on its own: a usable name, a snowflake id in range and an `http(s)://`
/// address without whitespace. [`RegionDirectory::new`] checks every entry with it, so a writer
/// can leave out the entries it would refuse instead of losing the whole directory.
pub fn check_entry(region: &RegionInfo) -> Result<(), DirectoryError> {
    validate_region_name(&region.name)?;
    if region.snowflake_id > MAX_SNOWFLAKE_ID {
        return Err(DirectoryError::SnowflakeRange {
            name: region.name.clone(),
            id: region.snowflake_id,
        });
    }
    let address = region.address.as_str();
    if address.trim().is_empty() {
        return Err(DirectoryError::EmptyAddress(region.name.clone()));
    }
    let rest = address
        .strip_prefix("http://")
        .or_else(|| address.strip_prefix("https://"));
    if !rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace)) {
        return Err(DirectoryError::InvalidAddress {
            name: region.name.clone(),
            address: address.to_owned(),
        });
    }
    Ok(())
}

impl RegionDirectory {
    /// Validate and sort `regions` into a directory.
    pub fn new(mut regions: Vec<RegionInfo>) -> Result<Self, DirectoryError> {
        regions.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_id: HashMap<u16, &str> = HashMap::new();
        for (i, region) in regions.iter().enumerate() {
            check_entry(region)?;
            if i > 0 && regions[i - 1].name == region.name {
                return Err(DirectoryError::DuplicateName(region.name.clone()));
            }
            if let Some(first) = by_id.insert(region.snowflake_id, &region.name) {
                return Err(DirectoryError::DuplicateSnowflake {
                    id: region.snowflake_id,
                    first: first.to_owned(),
                    second: region.name.clone(),
                });
            }
        }
        Ok(Self { regions })
    }

    /// Parse the JSON list format.
    pub fn from_json(json: &str) -> Result<Self, DirectoryError> {
        let regions: Vec<RegionInfo> =
            serde_json::from_str(json).map_err(|source| DirectoryError::Json { source })?;
        Self::new(regions)
    }

    /// The JSON list format, compact and deterministic (sorted by name).
    pub fn to_json(&self) -> String {
        // Serializing plain structs of strings and integers cannot fail.
        serde_json::to_string(&self.regions).unwrap_or_else(|_| "[]".to_owned())
    }

    pub fn regions(&self) -> &[RegionInfo] {
        &self.regions
    }

    pub fn get(&self, name: &str) -> Option<&RegionInfo> {
        self.regions
            .binary_search_by(|r| r.name.as_str().cmp(name))
            .ok()
            .map(|i| &self.regions[i])
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.regions.iter().map(|r| r.name.as_str())
    }

    pub fn len(&self) -> usize {
        self.regions.len()
    }

    pub fn is_empty(&self) -> bool {
        self.regions.is_empty()
    }
}

/// Where `SENTRY_REGION_CONFIG` keeps the directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RegionConfigSource {
    /// The JSON list itself.
    Inline(String),
    /// A file holding the JSON list (re-read when it changes, e.g. a mounted ConfigMap).
    File(PathBuf),
}

impl RegionConfigSource {
    /// A value starting with `[` is inline JSON; an absolute path or `file://` URL is a file.
    pub fn parse(value: &str) -> Result<Self, DirectoryError> {
        let trimmed = value.trim();
        if let Some(path) = trimmed.strip_prefix("file://") {
            return Ok(Self::File(PathBuf::from(path)));
        }
        if trimmed.starts_with('/') {
            return Ok(Self::File(PathBuf::from(trimmed)));
        }
        Ok(Self::Inline(trimmed.to_owned()))
    }

    /// The env value that refers to a directory file.
    pub fn file_value(path: &Path) -> String {
        path.display().to_string()
    }

    /// Read and validate the directory from this source.
    pub fn load(&self) -> Result<RegionDirectory, DirectoryError> {
        match self {
            Self::Inline(json) => RegionDirectory::from_json(json),
            Self::File(path) => {
                let json =
                    std::fs::read_to_string(path).map_err(|source| DirectoryError::Read {
                        path: path.clone(),
                        source,
                    })?;
                RegionDirectory::from_json(&json)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::region::RegionCategory;

    fn region(name: &str, id: u16) -> RegionInfo {
        RegionInfo {
            name: name.into(),
            snowflake_id: id,
            address: format!("http://web.region-{name}.svc:8000"),
            category: RegionCategory::MultiTenant,
            visible: true,
        }
    }

    #[test]
    fn sorts_and_round_trips() {
        let dir = RegionDirectory::new(vec![region("us", 1), region("de", 2)]).unwrap();
        assert_eq!(dir.names().collect::<Vec<_>>(), vec!["de", "us"]);
        let again = RegionDirectory::from_json(&dir.to_json()).unwrap();
        assert_eq!(again, dir);
        assert_eq!(dir.get("us").map(|r| r.snowflake_id), Some(1));
        assert!(dir.get("eu").is_none());
    }

    #[test]
    fn rejects_duplicates_with_names() {
        let err = RegionDirectory::new(vec![region("us", 1), region("de", 1)]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"de\"") && msg.contains("\"us\"") && msg.contains('1'),
            "{msg}"
        );
        assert!(matches!(
            RegionDirectory::new(vec![region("us", 1), region("us", 2)]),
            Err(DirectoryError::DuplicateName(_))
        ));
        assert!(matches!(
            RegionDirectory::new(vec![region("us", 4096)]),
            Err(DirectoryError::SnowflakeRange { .. })
        ));
    }

    #[test]
    fn rejects_addresses_that_are_not_http_urls() {
        for bad in [
            " ",
            "",
            "web.region-de.svc:8000",
            "http://web .svc",
            "http://",
        ] {
            let mut entry = region("de", 2);
            entry.address = bad.to_owned();
            let err = RegionDirectory::new(vec![entry.clone()]).unwrap_err();
            assert!(err.to_string().contains("\"de\""), "{bad:?}: {err}");
            assert!(check_entry(&entry).is_err(), "{bad:?}");
        }
        for good in ["http://web.region-de.svc:8000", "https://de.example.com/"] {
            let mut entry = region("de", 2);
            entry.address = good.to_owned();
            assert!(check_entry(&entry).is_ok(), "{good:?}");
        }
    }

    #[test]
    fn visible_defaults_to_true() {
        let dir = RegionDirectory::from_json(
            r#"[{"name":"de","snowflake_id":2,"address":"http://x","category":"SINGLE_TENANT"}]"#,
        )
        .unwrap();
        assert!(dir.regions()[0].visible);
        assert_eq!(dir.regions()[0].category, RegionCategory::SingleTenant);
    }

    #[test]
    fn bad_json_names_the_variable() {
        let err = RegionDirectory::from_json("{").unwrap_err();
        assert!(err.to_string().contains("SENTRY_REGION_CONFIG"));
    }

    #[test]
    fn source_distinguishes_inline_and_file() {
        assert_eq!(
            RegionConfigSource::parse("/etc/silo/regions.json").unwrap(),
            RegionConfigSource::File("/etc/silo/regions.json".into())
        );
        assert_eq!(
            RegionConfigSource::parse("file:///etc/x.json").unwrap(),
            RegionConfigSource::File("/etc/x.json".into())
        );
        assert!(matches!(
            RegionConfigSource::parse("[]").unwrap(),
            RegionConfigSource::Inline(_)
        ));
    }

    #[test]
    fn loads_from_file() {
        let dir = RegionDirectory::new(vec![region("de", 2)]).unwrap();
        let path = std::env::temp_dir().join(format!("silo-dir-{}.json", std::process::id()));
        std::fs::write(&path, dir.to_json()).unwrap();
        let loaded = RegionConfigSource::File(path.clone()).load().unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(loaded, dir);
        let missing = RegionConfigSource::File(path.clone()).load().unwrap_err();
        assert!(missing.to_string().contains(&path.display().to_string()));
    }
}
