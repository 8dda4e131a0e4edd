//! Names of the environment variables every silo pod receives.

/// `CONTROL`, `REGION` or `MONOLITH`.
pub const SILO_MODE: &str = "SENTRY_SILO_MODE";
/// The pod's own region (region silo and monolith).
pub const REGION: &str = "SENTRY_REGION";
/// The region directory: inline JSON, or an absolute path / `file://` URL of a JSON file.
pub const REGION_CONFIG: &str = "SENTRY_REGION_CONFIG";
/// The region that serves requests that carry no organization.
pub const MONOLITH_REGION: &str = "SENTRY_MONOLITH_REGION";
/// Base URL of the control silo (`http://host:port`).
pub const CONTROL_ADDRESS: &str = "SENTRY_CONTROL_ADDRESS";
/// Comma-separated list of RPC secrets; the first signs, any verifies (rotation).
pub const RPC_SHARED_SECRET: &str = "RPC_SHARED_SECRET";

/// Every variable of the contract, in a stable order.
pub const ALL: [&str; 6] = [
    SILO_MODE,
    REGION,
    REGION_CONFIG,
    MONOLITH_REGION,
    CONTROL_ADDRESS,
    RPC_SHARED_SECRET,
];

/// Split a `RPC_SHARED_SECRET` value into its keys (comma separated, blanks dropped).
pub fn parse_secret_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Join keys into a `RPC_SHARED_SECRET` value; the first key is the one that signs.
pub fn join_secret_list<S: AsRef<str>>(keys: &[S]) -> String {
    keys.iter().map(AsRef::as_ref).collect::<Vec<_>>().join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_list_round_trips_and_drops_blanks() {
        let keys = parse_secret_list(" new , old,,");
        assert_eq!(keys, vec!["new", "old"]);
        assert_eq!(join_secret_list(&keys), "new,old");
        assert!(parse_secret_list("").is_empty());
    }
}
