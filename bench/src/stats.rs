//! Percentiles and medians-with-spread.

use serde::Serialize;

/// Nearest-rank percentile of sorted samples; `None` when empty.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// Lateness distribution in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Default)]
pub struct Lateness {
    pub samples: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Lateness {
    pub fn of(mut ms: Vec<f64>) -> Lateness {
        ms.sort_by(f64::total_cmp);
        Lateness {
            samples: ms.len(),
            p50_ms: percentile(&ms, 50.0).unwrap_or(f64::NAN),
            p99_ms: percentile(&ms, 99.0).unwrap_or(f64::NAN),
            max_ms: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// Median of repeated measurements with their min and max.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub runs: usize,
}

impl Spread {
    pub fn of(values: &[f64]) -> Option<Spread> {
        let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return None;
        }
        v.sort_by(f64::total_cmp);
        Some(Spread {
            median: v[(v.len() - 1) / 2],
            min: v[0],
            max: v[v.len() - 1],
            runs: v.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn spread_takes_the_lower_median_and_ignores_nan() {
        let s = Spread::of(&[3.0, f64::NAN, 1.0, 2.0, 10.0]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.runs), (2.0, 1.0, 10.0, 4));
    }
}
