//! One table of a TOML configuration file: `[kafka]` and `[registry]` live in
//! a cluster file or a kafka file, next to tables other crates read.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file's text and the directory its relative paths are relative to.
pub(crate) fn read(path: &Path) -> Result<(String, PathBuf), std::io::Error> {
    let text = std::fs::read_to_string(path)?;
    let base_dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    Ok((text, base_dir))
}

/// The `[name]` table of `text` as `T`; `None` without one. Errors give a
/// position and the parser's message, never the line (it may hold a
/// password someone put in the wrong place).
pub(crate) fn table<T: DeserializeOwned>(text: &str, name: &str) -> Result<Option<T>, String> {
    let mut document: toml::Table = toml::from_str(text).map_err(|e| service::toml_error_without_source(text, &e))?;
    let Some(table) = document.remove(name) else {
        return Ok(None);
    };
    // Position-free on purpose: the sub-parse has no spans into `text`.
    table.try_into().map(Some).map_err(|e: toml::de::Error| e.message().to_owned())
}
