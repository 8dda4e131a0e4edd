//! Where the loopback services are: the environment, else the env file `e2e/services/up.sh`
//! writes (`export NAME=value` lines).

use std::path::PathBuf;

/// Connection settings of Postgres, Redis and Kafka.
#[derive(Clone, Debug)]
pub struct Services {
    pub database_url: String,
    pub redis_url: String,
    pub kafka_brokers: String,
}

impl Services {
    /// All three settings; panics with what to run when one is missing.
    pub fn get() -> Self {
        Services {
            database_url: required("DATABASE_URL"),
            redis_url: required("REDIS_URL"),
            kafka_brokers: required("KAFKA_BROKERS"),
        }
    }
}

/// The loopback broker's SASL_SSL listener: its address, the CA that signed its certificate,
/// and the user it knows under PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512.
#[derive(Clone, Debug)]
pub struct KafkaSaslSsl {
    pub brokers: String,
    pub ca_file: PathBuf,
    pub username: String,
    pub password: String,
}

impl KafkaSaslSsl {
    /// The settings; panics with what to run when one is missing.
    pub fn get() -> Self {
        KafkaSaslSsl {
            brokers: required("KAFKA_SASL_SSL_BROKERS"),
            ca_file: PathBuf::from(required("KAFKA_SASL_SSL_CA")),
            username: required("KAFKA_SASL_SSL_USERNAME"),
            password: required("KAFKA_SASL_SSL_PASSWORD"),
        }
    }
}

/// The superuser URL of the test Postgres (`DATABASE_URL`), for tests that need only it.
pub fn database_url() -> String {
    required("DATABASE_URL")
}

/// `${SILO_STATE_DIR:-${XDG_STATE_HOME:-$HOME/.local/state}/silo}`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("SILO_STATE_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".local/state")
        });
    base.join("silo")
}

/// The env file `e2e/services/up.sh` writes.
pub fn env_file() -> PathBuf {
    state_dir().join("services/env")
}

/// `name` from the environment (when not empty), else from [`env_file`].
pub fn setting(name: &str) -> Option<String> {
    if let Some(value) = std::env::var(name).ok().filter(|v| !v.is_empty()) {
        return Some(value);
    }
    let text = std::fs::read_to_string(env_file()).ok()?;
    from_env_file(&text, name)
}

/// [`setting`], or a panic naming the command that starts the services.
pub fn required(name: &str) -> String {
    setting(name).unwrap_or_else(|| {
        panic!(
            "{name} is not set and {} does not define it: start the services with \
             e2e/services/up.sh (or export {name})",
            env_file().display()
        )
    })
}

/// The value of `name` in the text of an env file (`[export ]NAME=value`, quotes dropped).
fn from_env_file(text: &str, name: &str) -> Option<String> {
    text.lines()
        .filter_map(|l| l.trim().trim_start_matches("export ").split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_owned())
}

/// Run `e2e/services/ctl.sh <action> <component>` (e.g. `stop postgres`); panics with its
/// output on failure.
pub fn ctl(action: &str, component: &str) {
    let out = std::process::Command::new("bash")
        .arg(crate::repo_root().join("e2e/services/ctl.sh"))
        .args([action, component])
        .output()
        .unwrap_or_else(|e| panic!("cannot run e2e/services/ctl.sh: {e}"));
    assert!(
        out.status.success(),
        "ctl.sh {action} {component} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Stop `component` (`postgres`, `redis`, `kafka`) with [`ctl`]; it is started again (and
/// waited for) when the returned guard is dropped, also when the test fails midway.
pub fn stop(component: &str) -> Stopped {
    ctl("stop", component);
    Stopped {
        component: component.to_owned(),
    }
}

/// A service stopped by [`stop`]; dropping it starts the service again.
#[must_use = "the service is started again when this is dropped"]
pub struct Stopped {
    component: String,
}

impl Drop for Stopped {
    fn drop(&mut self) {
        ctl("start", &self.component);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_lines_are_read_with_or_without_export_and_quotes() {
        let text = "export DATABASE_URL=\"postgres://u@h:1/postgres\"\nREDIS_URL=redis://h:2\n\
                    # KAFKA_BROKERS=commented\nexport KAFKA_BROKERS=h:3\n";
        assert_eq!(
            from_env_file(text, "DATABASE_URL").as_deref(),
            Some("postgres://u@h:1/postgres")
        );
        assert_eq!(
            from_env_file(text, "REDIS_URL").as_deref(),
            Some("redis://h:2")
        );
        assert_eq!(from_env_file(text, "KAFKA_BROKERS").as_deref(), Some("h:3"));
        assert_eq!(from_env_file(text, "MISSING"), None);
    }
}
