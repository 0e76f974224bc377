use futures_util::future::BoxFuture;

use super::{Embedder, normalize};
use crate::error::EmbedError;

/// Feature hashing of words and character trigrams into a fixed number of signed buckets,
/// normalised to unit length. Deterministic on every platform and offline: texts sharing words
/// or spellings land close together, which is enough for development and tests, not for
/// semantic search.
#[derive(Debug, Clone)]
pub struct HashEmbedder {
    dimension: usize,
}

impl HashEmbedder {
    #[must_use]
    pub fn new(dimension: usize) -> Self {
        Self {
            dimension: dimension.max(1),
        }
    }

    /// The vector of one text (all zeros for a text without letters or digits).
    #[must_use]
    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0.0f32; self.dimension];
        let lowered = text.to_lowercase();
        for word in lowered
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty())
        {
            self.add(&mut v, word.as_bytes(), 1.0);
            let padded: Vec<char> = std::iter::once('#')
                .chain(word.chars())
                .chain(std::iter::once('#'))
                .collect();
            for gram in padded.windows(3) {
                let gram: String = gram.iter().collect();
                self.add(&mut v, gram.as_bytes(), 0.5);
            }
        }
        normalize(&mut v);
        v
    }

    fn add(&self, v: &mut [f32], feature: &[u8], weight: f32) {
        let h = fnv1a(feature);
        let bucket = usize::try_from(h % self.dimension as u64).unwrap_or(0);
        let sign = if h >> 63 == 0 { 1.0 } else { -1.0 };
        v[bucket] += sign * weight;
    }
}

/// FNV-1a, 64-bit: stable across platforms and releases, unlike std's hasher.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl Embedder for HashEmbedder {
    fn name(&self) -> String {
        "hash".to_owned()
    }

    fn dimension(&self) -> usize {
        self.dimension
    }

    fn embed<'a>(
        &'a self,
        texts: &'a [String],
    ) -> BoxFuture<'a, Result<Vec<Vec<f32>>, EmbedError>> {
        Box::pin(async move { Ok(texts.iter().map(|t| self.embed_one(t)).collect()) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_unit_vectors_where_shared_words_score_higher() {
        let e = HashEmbedder::new(128);
        let a = e.embed_one("The quick brown fox");
        assert_eq!(a, e.embed_one("the QUICK brown fox!"));
        assert!((cosine(&a, &a) - 1.0).abs() < 1e-5);
        let near = e.embed_one("a quick brown dog");
        let far = e.embed_one("quarterly tax report");
        assert!(cosine(&a, &near) > cosine(&a, &far) + 0.2);
        // Pinned: a change of the hashing would silently change every stored vector.
        assert_eq!(fnv1a(b"fox"), 0xdcb2_8218_fed9_eb8e);
    }

    #[test]
    fn text_without_words_is_the_zero_vector() {
        assert!(
            HashEmbedder::new(8)
                .embed_one(" ,.; ")
                .iter()
                .all(|x| *x == 0.0)
        );
    }
}
