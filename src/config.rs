//! The TOML configuration file (`artifactfs mount --config FILE`): every mount
//! option, manifest defaults, name-glob → artifact_type rules and a uid → agent
//! map. Command-line flags win over the file. Unknown keys are errors, so a typo
//! never silently does nothing.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data: Option<PathBuf>,
    pub backend: Option<String>,
    pub agent: Option<String>,
    pub durability: Option<String>,
    pub on_commit: Option<String>,
    pub threads: Option<usize>,
    pub upload_attempts: Option<u32>,
    /// Bytes (a number) or a size string like "512M".
    pub spool_max: Option<String>,
    /// Read cache cap: bytes or a size string like "10G" (`--cache-max`).
    pub cache_max: Option<String>,
    /// How often the daemon runs gc ("1h"; "0": never).
    pub gc_interval: Option<String>,
    /// How often failed uploads are retried ("10m"; "0": only at mount).
    pub retry_failed: Option<String>,
    /// File-name globs of scratch files (never versioned); default
    /// `DEFAULT_SCRATCH`, `[]` for none.
    pub scratch: Option<Vec<String>>,
    #[serde(default)]
    pub defaults: DefaultsSection,
    /// Tried in order; the first glob that matches a new artifact's name (or its
    /// path, when the glob contains '/') gives its type.
    #[serde(default)]
    pub types: Vec<TypeRule>,
    /// uid (as a string key) → agent name, for mounts without `agent`.
    #[serde(default)]
    pub agents: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DefaultsSection {
    pub artifact_type: Option<String>,
    pub visibility: Option<String>,
    pub retention: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TypeRule {
    pub glob: String,
    #[serde(rename = "type")]
    pub artifact_type: String,
}

/// Agent names become directory names under `.by-agent/`.
pub fn valid_agent(a: &str) -> bool {
    !a.is_empty()
        && a.len() <= 64
        && !a.contains('/')
        && !a.contains(char::is_control)
        && a != "."
        && a != ".."
}

/// A compiled `[[types]]` rule.
#[derive(Clone, Debug)]
pub struct TypeMatcher {
    pattern: glob::Pattern,
    on_path: bool,
    pub artifact_type: String,
}

impl TypeMatcher {
    pub fn matches(&self, path: &str) -> bool {
        let subject = if self.on_path {
            path
        } else {
            path.rsplit('/').next().unwrap_or(path)
        };
        self.pattern.matches(subject)
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let cfg: Config = toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        cfg.type_matchers()?;
        cfg.uid_agents()?;
        let types = cfg
            .types
            .iter()
            .map(|t| &t.artifact_type)
            .chain(cfg.defaults.artifact_type.as_ref());
        for t in types {
            if !crate::catalog::valid_type(t) {
                return Err(format!(
                    "{}: artifact type {t:?}: use [a-z0-9_-], 1 to 64 characters",
                    path.display()
                ));
            }
        }
        let agents = cfg.agents.values().chain(cfg.agent.as_ref());
        for a in agents {
            if !valid_agent(a) {
                return Err(format!(
                    "{}: agent {a:?}: no '/', no control characters, 1 to 64 bytes",
                    path.display()
                ));
            }
        }
        if let Some(v) = &cfg.defaults.visibility {
            if !crate::catalog::VISIBILITIES.contains(&v.as_str()) {
                return Err(format!(
                    "{}: defaults.visibility {v:?}: expected private, trace or public",
                    path.display()
                ));
            }
        }
        if let Some(r) = &cfg.defaults.retention {
            if !crate::catalog::valid_retention(r) {
                return Err(format!(
                    "{}: defaults.retention {r:?}: expected e.g. 30d, 12h or forever",
                    path.display()
                ));
            }
        }
        Ok(cfg)
    }

    pub fn type_matchers(&self) -> Result<Vec<TypeMatcher>, String> {
        self.types
            .iter()
            .map(|r| {
                Ok(TypeMatcher {
                    pattern: glob::Pattern::new(&r.glob)
                        .map_err(|e| format!("types glob {:?}: {e}", r.glob))?,
                    on_path: r.glob.contains('/'),
                    artifact_type: r.artifact_type.clone(),
                })
            })
            .collect()
    }

    pub fn scratch_globs(&self) -> Result<Vec<glob::Pattern>, String> {
        match &self.scratch {
            None => Ok(default_scratch()),
            Some(globs) => globs
                .iter()
                .map(|g| glob::Pattern::new(g).map_err(|e| format!("scratch glob {g:?}: {e}")))
                .collect(),
        }
    }

    pub fn uid_agents(&self) -> Result<BTreeMap<u32, String>, String> {
        self.agents
            .iter()
            .map(|(k, v)| {
                Ok((
                    k.parse::<u32>()
                        .map_err(|_| format!("agents: {k:?} is not a uid"))?,
                    v.clone(),
                ))
            })
            .collect()
    }
}

/// DESIGN.md's scratch files: editors' swap, backup and lock files, temporaries.
pub const DEFAULT_SCRATCH: &[&str] = &["*.swp", "*~", ".#*", "*.tmp"];

pub fn default_scratch() -> Vec<glob::Pattern> {
    DEFAULT_SCRATCH
        .iter()
        .map(|g| glob::Pattern::new(g).expect("valid default glob"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rules_and_rejects_typos() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.toml");
        std::fs::write(
            &p,
            r#"
            agent = "planner"
            spool_max = "512M"
            upload_attempts = 5
            [defaults]
            retention = "30d"
            [[types]]
            glob = "critique*.md"
            type = "critique"
            [[types]]
            glob = "*/final/*"
            type = "final"
            [agents]
            1000 = "alice"
            "#,
        )
        .unwrap();
        let c = Config::load(&p).unwrap();
        let m = c.type_matchers().unwrap();
        assert!(m[0].matches("t/s/critique-2.md"));
        assert!(!m[0].matches("t/critique/x.md"));
        assert!(m[1].matches("t/final/report.md"));
        assert_eq!(c.uid_agents().unwrap()[&1000], "alice");
        assert_eq!(
            (c.spool_max.as_deref(), c.upload_attempts),
            (Some("512M"), Some(5))
        );
        std::fs::write(&p, "agnet = \"x\"\n").unwrap();
        assert!(Config::load(&p).unwrap_err().contains("unknown field"));
        std::fs::write(&p, "[defaults]\nvisibility = \"world\"\n").unwrap();
        assert!(Config::load(&p).unwrap_err().contains("visibility"));
    }
}
