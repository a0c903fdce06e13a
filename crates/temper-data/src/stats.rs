//! Token-length statistics gathered in one pass, in memory that does not grow with the data.

use serde::Serialize;

/// Exact counts per length up to this bound; longer lengths share the last bin (their
/// percentiles report as the bound) but min, max and mean stay exact.
const EXACT_UP_TO: usize = 1 << 16;

#[derive(Clone, Debug)]
pub struct LengthStats {
    count: u64,
    sum: u64,
    min: usize,
    max: usize,
    histogram: Vec<u64>,
}

impl Default for LengthStats {
    fn default() -> Self {
        LengthStats {
            count: 0,
            sum: 0,
            min: usize::MAX,
            max: 0,
            histogram: Vec::new(),
        }
    }
}

/// The summary printed by `temper data check`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LengthSummary {
    pub count: u64,
    pub min: usize,
    pub mean: f64,
    pub p50: usize,
    pub p95: usize,
    pub max: usize,
}

impl LengthStats {
    pub fn add(&mut self, length: usize) {
        self.count += 1;
        self.sum += length as u64;
        self.min = self.min.min(length);
        self.max = self.max.max(length);
        let bin = length.min(EXACT_UP_TO);
        if self.histogram.len() <= bin {
            self.histogram.resize(bin + 1, 0);
        }
        self.histogram[bin] += 1;
    }

    /// The smallest length with at least `q` of the values at or below it.
    fn quantile(&self, q: f64) -> usize {
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (length, &n) in self.histogram.iter().enumerate() {
            seen += n;
            if seen >= target {
                return length;
            }
        }
        self.max
    }

    pub fn summary(&self) -> Option<LengthSummary> {
        (self.count > 0).then(|| LengthSummary {
            count: self.count,
            min: self.min,
            mean: self.sum as f64 / self.count as f64,
            p50: self.quantile(0.5),
            p95: self.quantile(0.95),
            max: self.max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_lengths() {
        let mut stats = LengthStats::default();
        (1..=100).for_each(|l| stats.add(l));
        let s = stats.summary().unwrap();
        assert_eq!((s.count, s.min, s.p50, s.p95, s.max), (100, 1, 50, 95, 100));
        assert!((s.mean - 50.5).abs() < 1e-12);
        stats.add(1000);
        assert_eq!(stats.summary().unwrap().max, 1000);
        assert!(LengthStats::default().summary().is_none());
    }
}
