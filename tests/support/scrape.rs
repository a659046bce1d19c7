//! Reading the operator's `/metrics`, `/healthz` and `/readyz`.

use std::collections::BTreeMap;

/// Samples of one scrape, keyed by series (`name{labels}`) as the text format writes them.
#[derive(Debug)]
pub struct Samples(pub BTreeMap<String, f64>);

impl Samples {
    /// Returns the value of `series`, or 0 when the series is absent, as a counter that
    /// never moved is.
    pub fn value(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }

    /// Sums every series of the metric `name` whose labels contain all of `labels`.
    pub fn sum(&self, name: &str, labels: &[&str]) -> f64 {
        self.0
            .iter()
            .filter(|(series, _)| {
                series.split('{').next() == Some(name)
                    && labels.iter().all(|label| series.contains(label))
            })
            .map(|(_, value)| value)
            .sum()
    }
}

/// Scrapes `/metrics` under `base_url`.
pub async fn metrics(base_url: &str) -> Samples {
    let text = reqwest::get(format!("{base_url}/metrics"))
        .await
        .expect("metrics server unreachable")
        .text()
        .await
        .expect("metrics body unreadable");
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_string(), value.parse().ok()?))
        })
        .collect();
    Samples(samples)
}

/// Returns the status code and body of `path` under `base_url`.
pub async fn probe(base_url: &str, path: &str) -> (u16, String) {
    let response = reqwest::get(format!("{base_url}{path}"))
        .await
        .expect("probe server unreachable");
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}
