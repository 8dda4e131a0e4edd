//! The contract a pod reads from its environment (`SiloContract::from_lookup`): silo mode,
//! region names, an inline region directory, control address and the RPC secret list.
//!
//! The input is up to six NUL-separated values, one per variable of `env::ALL` (an empty value
//! counts as unset). A directory given as a file path is skipped: the target reads no files.
//! Checks: a contract that is accepted is consistent (REGION mode has its region, listed in
//! a non-empty directory; the local region resolves; the control address has no trailing
//! `/`; secrets are the trimmed non-empty list items and survive join/parse); reloading an
//! inline directory gives the same contract; silo modes round-trip through `as_str`.

#![no_main]

use libfuzzer_sys::fuzz_target;
use silo_contract::{RegionConfigSource, SiloContract, SiloMode, env};
use silo_fuzz::split;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let values = split::<6>(text.as_bytes(), 0)
        .map(|p| std::str::from_utf8(p).expect("split at an ASCII byte"));
    let value = |name: &str| {
        let i = env::ALL
            .iter()
            .position(|v| *v == name)
            .expect("a contract variable");
        Some(values[i]).filter(|v| !v.is_empty())
    };
    if let Some(config) = value(env::REGION_CONFIG)
        && matches!(
            RegionConfigSource::parse(config),
            Ok(RegionConfigSource::File(_))
        )
    {
        return;
    }

    if let Some(mode) = value(env::SILO_MODE)
        && let Ok(parsed) = mode.parse::<SiloMode>()
    {
        assert_eq!(parsed.as_str().parse::<SiloMode>().ok(), Some(parsed));
        assert_eq!(parsed.as_str(), mode.trim().to_ascii_uppercase());
    }

    let Ok(contract) = SiloContract::from_lookup(|name| value(name).map(str::to_owned)) else {
        return;
    };
    if contract.mode == SiloMode::Region {
        let region = contract
            .region
            .as_deref()
            .expect("REGION mode has a region");
        assert!(!contract.directory.is_empty());
        assert!(contract.directory.get(region).is_some());
        assert_eq!(contract.local_region(), Some(region));
        assert!(contract.local_region_info().is_some());
    }
    if contract.mode == SiloMode::Control {
        assert_eq!(contract.local_region(), None);
    }
    if let Some(address) = &contract.control_address {
        assert!(!address.ends_with('/'));
    }
    for name in [&contract.region, &contract.monolith_region]
        .into_iter()
        .flatten()
    {
        assert_eq!(name.trim(), name);
        assert!(!name.is_empty());
    }
    assert!(
        contract
            .rpc_secrets
            .iter()
            .all(|k| !k.is_empty() && k.trim() == k)
    );
    assert_eq!(
        env::parse_secret_list(&env::join_secret_list(&contract.rpc_secrets)),
        contract.rpc_secrets
    );
    if let Some(fallback) = contract.fallback_region() {
        assert_eq!(contract.directory.get(&fallback.name), Some(fallback));
    }
    assert_eq!(contract.reload().ok().as_ref(), Some(&contract));
});
