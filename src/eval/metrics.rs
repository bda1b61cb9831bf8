//! Exact match, edit similarity, and a bootstrap interval for the gap
//! between two modes.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// The predicted line equals the target, ignoring leading and trailing
/// whitespace (as RepoBench compares lines).
pub fn exact_match(predicted: &str, target: &str) -> bool {
    predicted.trim() == target.trim()
}

/// Normalized Levenshtein similarity of the trimmed lines, in chars,
/// 0..=100 (100: equal).
pub fn edit_similarity(predicted: &str, target: &str) -> f64 {
    100.0 * strsim::normalized_levenshtein(predicted.trim(), target.trim())
}

/// Mean of `values` with a 95% percentile-bootstrap interval
/// (`resamples` resamples, seeded).
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> (f64, f64, f64) {
    if values.is_empty() {
        return (f64::NAN, f64::NAN, f64::NAN);
    }
    let n = values.len();
    let mean = values.iter().sum::<f64>() / n as f64;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    (mean, at(0.025), at(0.975))
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// The `p`-th percentile (0..=100), nearest rank on the sorted values.
pub fn percentile(values: &mut [f64], p: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let index = ((values.len() as f64 - 1.0) * p / 100.0).round() as usize;
    values[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_match_ignores_surrounding_whitespace_only() {
        assert!(exact_match("    return x", "return x  "));
        assert!(exact_match("", "   "));
        assert!(!exact_match("return x", "return  x"));
        assert!(!exact_match("return x", "return y"));
    }

    #[test]
    fn edit_similarity_on_hand_made_cases() {
        assert_eq!(edit_similarity("abc", "abc"), 100.0);
        assert_eq!(edit_similarity("", ""), 100.0);
        assert_eq!(edit_similarity("abc", ""), 0.0);
        // One substitution in four chars.
        assert!((edit_similarity("abcd", "abxd") - 75.0).abs() < 1e-9);
        // One insertion: distance 1 over the longer length 5.
        assert!((edit_similarity("  abcd", "abcde") - 80.0).abs() < 1e-9);
        // Chars, not bytes.
        assert!((edit_similarity("é", "e") - 0.0).abs() < 1e-9);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_shrinks_with_n() {
        let small: Vec<f64> = (0..20).map(|i| (i % 2) as f64).collect();
        let large: Vec<f64> = (0..2000).map(|i| (i % 2) as f64).collect();
        let (m, lo, hi) = bootstrap_mean(&small, 2000, 1);
        assert!((m - 0.5).abs() < 1e-12 && lo < m && m < hi);
        let (_, lo2, hi2) = bootstrap_mean(&large, 2000, 1);
        assert!(hi2 - lo2 < (hi - lo) / 3.0);
        let constant = vec![0.25; 50];
        assert_eq!(bootstrap_mean(&constant, 100, 1), (0.25, 0.25, 0.25));
    }

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    #[test]
    fn percentile_by_nearest_rank() {
        let mut values: Vec<f64> = (1..=21).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut values, 95.0), 20.0);
        assert_eq!(percentile(&mut values, 50.0), 11.0);
        assert_eq!(percentile(&mut values, 100.0), 21.0);
        assert!(percentile(&mut [], 50.0).is_nan());
    }
}
