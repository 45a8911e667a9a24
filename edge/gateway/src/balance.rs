//! Smooth weighted round-robin (as in nginx): spreads picks evenly in
//! proportion to weight, with no bursts to one target.

use std::sync::Mutex;

/// Balancer over the targets of one upstream.
#[derive(Debug)]
pub struct Balancer {
    weights: Vec<i64>,
    current: Mutex<Vec<i64>>,
}

impl Balancer {
    /// A balancer for targets with these weights (all ≥ 1).
    pub fn new(weights: impl IntoIterator<Item = u32>) -> Self {
        let weights: Vec<i64> = weights.into_iter().map(i64::from).collect();
        let current = Mutex::new(vec![0; weights.len()]);
        Self { weights, current }
    }

    /// Picks the next target, skipping those in `exclude` when any other is left.
    pub fn pick(&self, exclude: &[usize]) -> usize {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        let eligible = |i: usize| !exclude.contains(&i) || exclude.len() >= self.weights.len();
        let mut total = 0;
        let mut best: Option<usize> = None;
        for (i, w) in self.weights.iter().enumerate() {
            if !eligible(i) {
                continue;
            }
            current[i] += w;
            total += w;
            if best.is_none_or(|b| current[i] > current[b]) {
                best = Some(i);
            }
        }
        let best = best.unwrap_or(0);
        current[best] -= total;
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picks_follow_weights_smoothly() {
        let b = Balancer::new([5, 1, 1]);
        let picks: Vec<usize> = (0..7).map(|_| b.pick(&[])).collect();
        assert_eq!(picks, vec![0, 0, 1, 0, 2, 0, 0]);
    }

    #[test]
    fn excluded_target_is_skipped_while_others_remain() {
        let b = Balancer::new([1, 1]);
        for _ in 0..4 {
            assert_eq!(b.pick(&[0]), 1);
        }
        let single = Balancer::new([1]);
        assert_eq!(single.pick(&[0]), 0);
    }
}
