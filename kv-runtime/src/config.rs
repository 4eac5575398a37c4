//! TOML config files. Each binary layers, lowest first: built-in defaults, the
//! file given with `--config`, environment variables, then flags (clap reads
//! the last two, and a binary merges them over what this module loads).

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this binary.
    #[error("invalid config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The cause, with line and column.
        source: Box<toml::de::Error>,
    },
    /// A value breaks a rule.
    #[error("invalid config: {0}")]
    Invalid(String),
}

/// Reads `path` as TOML, or returns the defaults when there is no file.
/// Unknown keys are errors (the config structs deny them), so a typo is caught.
pub fn load_toml<T: DeserializeOwned + Default>(path: Option<&Path>) -> Result<T, ConfigError> {
    let Some(path) = path else {
        return Ok(T::default());
    };
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

/// Overrides `slot` with a flag or environment value, when one was given.
pub fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

/// Overrides an optional setting, when a value was given.
pub fn set_some<T>(slot: &mut Option<T>, value: Option<T>) {
    if value.is_some() {
        *slot = value;
    }
}
