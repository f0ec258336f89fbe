//! [`Report`]: every figure the benchmark measures, printed as a table at the end and written
//! as JSON lines (one object per figure, after a header line describing the run) for scripts.

use std::io::Write as _;
use std::path::Path;

use serde::Serialize;

/// One measured figure, with the baseline's figure for the same case when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub phase: String,
    pub case: String,
    pub unit: String,
    pub jetwork: Option<f64>,
    pub baseline: Option<f64>,
    /// jetwork / baseline.
    pub ratio: Option<f64>,
    /// The target this figure is held to, in words, and whether this run met it.
    pub target: Option<String>,
    pub met: Option<bool>,
}

/// The run's figures.
#[derive(Debug, Default)]
pub struct Report {
    records: Vec<Record>,
}

impl Report {
    /// Adds a figure; returns it for a target to be attached.
    pub fn add(
        &mut self,
        phase: &str,
        case: &str,
        unit: &str,
        jetwork: Option<f64>,
        baseline: Option<f64>,
    ) -> &mut Record {
        let ratio = match (jetwork, baseline) {
            (Some(j), Some(b)) if b > 0.0 => Some(j / b),
            _ => None,
        };
        self.records.push(Record {
            phase: phase.to_owned(),
            case: case.to_owned(),
            unit: unit.to_owned(),
            jetwork,
            baseline,
            ratio,
            target: None,
            met: None,
        });
        self.records.last_mut().expect("just pushed")
    }

    /// Writes the header and every record as JSON lines to `path`.
    pub fn write_jsonl(&self, path: &Path, header: &serde_json::Value) -> anyhow::Result<()> {
        let mut file = std::io::BufWriter::new(std::fs::File::create(path)?);
        writeln!(file, "{}", serde_json::to_string(header)?)?;
        for record in &self.records {
            writeln!(file, "{}", serde_json::to_string(record)?)?;
        }
        file.flush()?;
        Ok(())
    }

    /// The table, as Markdown (it reads as plain text too, and pastes into docs/performance.md).
    pub fn table(&self) -> String {
        let mut out = String::from(
            "| phase | case | jetwork | baseline | ratio | target |\n|---|---|---:|---:|---:|---|\n",
        );
        for r in &self.records {
            let figure =
                |v: Option<f64>| v.map(|v| format!("{} {}", fmt(v), r.unit)).unwrap_or_default();
            let target = match (&r.target, r.met) {
                (Some(t), Some(true)) => format!("{t} ✓"),
                (Some(t), Some(false)) => format!("{t} ✗"),
                (Some(t), None) => t.clone(),
                _ => String::new(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} |\n",
                r.phase,
                r.case,
                figure(r.jetwork),
                figure(r.baseline),
                r.ratio.map(|x| format!("{x:.2}×")).unwrap_or_default(),
                target
            ));
        }
        out
    }
}

impl Record {
    /// Holds this figure to a target: `met` says whether it was reached.
    pub fn target(&mut self, words: &str, met: bool) {
        self.target = Some(words.to_owned());
        self.met = Some(met);
    }
}

/// Three significant figures, without a fractional part for large values.
fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}
