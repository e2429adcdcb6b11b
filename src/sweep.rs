//! `pushbench sweep`: one scenario run at every point of one or two varied
//! keys (`--vary network.rtt=0ms,20ms,100ms`), each point a normal run
//! with its own results directory, indexed by `sweep.json`, then charted
//! against the varied key with a crossover table (see `report::sweep`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use serde::{Deserialize, Serialize};

use crate::scenario::{Override, Scenario};

/// The index file of a sweep directory.
pub const INDEX: &str = "sweep.json";
pub const SCHEMA_VERSION: u32 = 1;

/// One `--vary KEY=V1,V2,…`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Vary {
    pub key: String,
    pub values: Vec<String>,
}

impl Vary {
    /// Parses `KEY=V1,V2,…` as given to `--vary`.
    pub fn parse(arg: &str) -> Result<Vary, String> {
        let o = Override::parse_set(arg)?;
        let values: Vec<String> = o
            .value
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if values.len() < 2 {
            return Err(format!(
                "{arg:?}: give two or more values to compare, e.g. {}=0ms,50ms,100ms",
                o.key
            ));
        }
        for v in &values {
            if number(v).is_none() {
                return Err(format!(
                    "{arg:?}: {v:?} is not a number or duration; a sweep varies a numeric key"
                ));
            }
        }
        Ok(Vary { key: o.key, values })
    }
}

/// A value on the x axis: a duration in ms, or the number itself.
pub fn number(value: &str) -> Option<f64> {
    value.parse::<f64>().ok().or_else(|| {
        humantime::parse_duration(value)
            .ok()
            .map(|d| d.as_secs_f64() * 1e3)
    })
}

/// One point of the sweep: the values it set and where its run went.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Point {
    /// Each varied key's value at this point, as given.
    pub values: BTreeMap<String, String>,
    /// The results directory of its run, relative to the sweep directory;
    /// none if the run wrote none.
    pub results: Option<String>,
    /// The run's exit code (0: complete; 1: failed or a threshold failed;
    /// 2: refused; 130: interrupted).
    pub exit_code: Option<i32>,
}

/// sweep.json.
#[derive(Clone, Debug, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Index {
    pub schema_version: u32,
    pub scenario: String,
    pub name: String,
    pub started_at_utc: String,
    pub vary: Vec<Vary>,
    /// The other command-line overrides every point ran with.
    pub overrides: Vec<String>,
    pub points: Vec<Point>,
}

/// Every point of the grid, first key slowest.
pub fn grid(vary: &[Vary]) -> Vec<BTreeMap<String, String>> {
    let mut points = vec![BTreeMap::new()];
    for v in vary {
        points = points
            .into_iter()
            .flat_map(|p| {
                v.values.iter().map(move |value| {
                    let mut p = p.clone();
                    p.insert(v.key.clone(), value.clone());
                    p
                })
            })
            .collect();
    }
    points
}

/// Validates the scenario at every point, with the command line's
/// overrides, before any starts (the rest of what `run` checks is checked
/// once by the sweep command).
pub fn validate(path: &Path, overrides: &[Override], vary: &[Vary]) -> Result<Scenario, String> {
    if vary.is_empty() {
        return Err("give at least one --vary KEY=V1,V2,…".into());
    }
    if vary.len() > 2 {
        return Err("at most two --vary: a sweep is a line or a grid".into());
    }
    if vary.len() == 2 && vary[0].key == vary[1].key {
        return Err(format!("--vary {} is given twice", vary[0].key));
    }
    let mut first = None;
    for point in grid(vary) {
        let mut all = overrides.to_vec();
        all.extend(point.iter().map(|(k, v)| Override {
            key: k.clone(),
            value: v.clone(),
            flag: format!("--vary {k}={v}"),
        }));
        let s = Scenario::load_with(path, &all).map_err(|e| e.to_string())?;
        first.get_or_insert(s);
    }
    first.ok_or_else(|| "no points".into())
}

/// Reads a sweep directory's index.
pub fn load(dir: &Path) -> anyhow::Result<Index> {
    let path = dir.join(INDEX);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let index: Index = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a sweep index", path.display()))?;
    if index.schema_version != SCHEMA_VERSION {
        bail!(
            "{}: schema_version {}, but this pushbench reads {SCHEMA_VERSION}",
            path.display(),
            index.schema_version
        );
    }
    Ok(index)
}

/// Writes the index (after every point, so an interrupted sweep keeps one).
pub fn save(dir: &Path, index: &Index) -> anyhow::Result<()> {
    let path = dir.join(INDEX);
    std::fs::write(&path, serde_json::to_string_pretty(index)? + "\n")
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The one results directory a point's run wrote under `root`.
pub fn written_results(root: &Path) -> Option<PathBuf> {
    std::fs::read_dir(root)
        .ok()?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.is_dir() && p.join("summary.json").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vary_takes_numbers_and_durations_and_refuses_the_rest() {
        let v = Vary::parse("network.rtt=0ms, 20ms,100ms").unwrap();
        assert_eq!(v.key, "network.rtt");
        assert_eq!(v.values, ["0ms", "20ms", "100ms"]);
        assert_eq!(number("100ms"), Some(100.0));
        assert_eq!(number("1.5"), Some(1.5));
        assert!(
            Vary::parse("publish.rate=800")
                .unwrap_err()
                .contains("two or more")
        );
        assert!(
            Vary::parse("publish.arrival=poisson,constant")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(Vary::parse("rate").is_err());
    }

    #[test]
    fn a_grid_has_every_combination_first_key_slowest() {
        let vary = [
            Vary::parse("network.rtt=0ms,50ms").unwrap(),
            Vary::parse("network.loss=0,1,2").unwrap(),
        ];
        let g = grid(&vary);
        assert_eq!(g.len(), 6);
        assert_eq!(g[0]["network.rtt"], "0ms");
        assert_eq!(g[2]["network.loss"], "2");
        assert_eq!(g[3]["network.rtt"], "50ms");
    }
}
