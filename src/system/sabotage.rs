//! Deliberate bugs, for proving that the wind tunnel catches them.
//!
//! A tool that hunts for failures must be shown to find them. Each [`Sabotage`] switches on a
//! known durability bug in the example systems; set `WINDTUNNEL_SABOTAGE` to a comma-separated
//! list of their names (e.g. `store-acks-before-sync`) and a swarm sweep should find a seed that
//! loses data, and `shrink` should reduce it to a small scenario. Off unless the variable is set;
//! `serve` refuses to start with one on.

use std::collections::BTreeSet;
use std::sync::OnceLock;

/// The environment variable that switches sabotages on.
pub const SABOTAGE_VAR: &str = "WINDTUNNEL_SABOTAGE";

/// A known bug that can be switched on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sabotage {
    /// The store answers a write before the sync that makes it durable: a crash in between
    /// loses a write its caller was told is stored.
    StoreAcksBeforeSync,
}

impl Sabotage {
    /// Every sabotage, with its name.
    pub const ALL: [(Sabotage, &'static str); 1] =
        [(Sabotage::StoreAcksBeforeSync, "store-acks-before-sync")];
}

/// The sabotages a value of [`SABOTAGE_VAR`] names, or which name is unknown.
pub fn parse(value: &str) -> Result<BTreeSet<Sabotage>, String> {
    let mut on = BTreeSet::new();
    for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let Some((s, _)) = Sabotage::ALL.iter().find(|(_, n)| *n == name) else {
            let known: Vec<&str> = Sabotage::ALL.iter().map(|(_, n)| *n).collect();
            return Err(format!(
                "{SABOTAGE_VAR}: unknown sabotage {name:?}; expected one of {}",
                known.join(", ")
            ));
        };
        on.insert(*s);
    }
    Ok(on)
}

/// The sabotages switched on in this process's environment (none if the variable is unset or
/// invalid: the command line checks it with [`from_env`] before running anything).
fn switched_on() -> &'static BTreeSet<Sabotage> {
    static ON: OnceLock<BTreeSet<Sabotage>> = OnceLock::new();
    ON.get_or_init(|| from_env().unwrap_or_default())
}

/// The sabotages [`SABOTAGE_VAR`] switches on, or why its value is invalid.
pub fn from_env() -> Result<BTreeSet<Sabotage>, String> {
    match std::env::var(SABOTAGE_VAR) {
        Ok(value) => parse(&value),
        Err(std::env::VarError::NotPresent) => Ok(BTreeSet::new()),
        Err(e) => Err(format!("{SABOTAGE_VAR}: {e}")),
    }
}

/// Whether `sabotage` is switched on in this process.
pub fn on(sabotage: Sabotage) -> bool {
    switched_on().contains(&sabotage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_an_unknown_one_is_refused_with_the_known_ones() {
        let on = parse(" store-acks-before-sync ,").expect("known names");
        assert_eq!(on.len(), 1);
        assert!(parse("").expect("empty").is_empty());
        let e = parse("store-acks-early").expect_err("unknown");
        assert!(e.contains("store-acks-before-sync"), "{e}");
    }
}
