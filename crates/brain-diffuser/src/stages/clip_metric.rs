//! CLIP ViT-L/14 plugged into the `metrics` crate as the extractor of the "CLIP" column: the final
//! projected image embedding (OpenAI's `encode_image`, not L2-normalised), which is what both
//! published protocols compare.

use clip::ClipVisionModel;
use metrics::{FeatureExtractor, MetricsError, Normalization};
use ndarray::{Array2, ArrayView4};
use tch::{Device, Kind, Tensor};

/// The CLIP image embedding as a [`FeatureExtractor`] (slot `metrics::protocol::slots::CLIP`).
pub struct ClipImageEmbedding {
    model: ClipVisionModel,
}

impl ClipImageEmbedding {
    /// Wraps a loaded vision tower (with its `visual_projection`).
    pub fn new(model: ClipVisionModel) -> Self {
        Self { model }
    }
}

fn metrics_error(e: impl std::fmt::Display) -> MetricsError {
    MetricsError::Invalid { what: "CLIP image embedding".into(), message: e.to_string() }
}

impl FeatureExtractor for ClipImageEmbedding {
    fn name(&self) -> &str {
        "clip-vit-l14"
    }

    fn normalization(&self) -> Normalization {
        Normalization::CLIP
    }

    /// One output, `final`: the name both protocols give the CLIP column's features.
    fn outputs(&self) -> Vec<String> {
        vec!["final".to_owned()]
    }

    fn extract(&self, batch: ArrayView4<f32>) -> Result<Vec<Array2<f32>>, MetricsError> {
        let (n, c, h, w) = batch.dim();
        let values: Vec<f32> = batch.iter().copied().collect();
        let device = self.model.var_store().device();
        let x = Tensor::from_slice(&values)
            .f_reshape([n as i64, c as i64, h as i64, w as i64])
            .and_then(|x| x.f_to_device(device))
            .map_err(metrics_error)?;
        let out = self.model.forward(&x).map_err(metrics_error)?;
        let embeds = out
            .image_embeds
            .f_to_device(Device::Cpu)
            .and_then(|t| t.f_to_kind(Kind::Float))
            .and_then(|t| t.f_contiguous())
            .map_err(metrics_error)?;
        let shape = embeds.size();
        let d = shape.get(1).copied().unwrap_or(0) as usize;
        let flat = Vec::<f32>::try_from(&embeds.f_view([-1]).map_err(metrics_error)?).map_err(metrics_error)?;
        let rows = Array2::from_shape_vec((n, d), flat).map_err(|e| {
            metrics_error(format!("image embeddings of shape {shape:?} for {n} images, expected [{n}, {d}]: {e}"))
        })?;
        Ok(vec![rows])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clip::VisionConfig;
    use ndarray::{Array4, s};

    #[test]
    fn embeddings_are_per_image_and_batch_independent() {
        let config = VisionConfig {
            hidden_size: 32,
            intermediate_size: 64,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            image_size: 28,
            patch_size: 14,
            num_channels: 3,
            projection_dim: Some(12),
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".into(),
        };
        tch::manual_seed(1);
        let extractor = ClipImageEmbedding::new(ClipVisionModel::new(&config, Device::Cpu, Kind::Float).unwrap());
        let batch =
            Array4::from_shape_fn((3, 3, 28, 28), |(n, c, y, x)| ((n * 7 + c * 3 + y + 2 * x) % 11) as f32 / 5.0 - 1.0);
        let all = extractor.extract(batch.view()).unwrap();
        assert_eq!(all.len(), 1);
        assert_eq!(all[0].dim(), (3, 12));
        for i in 0..3 {
            let one = extractor.extract(batch.slice(s![i..i + 1, .., .., ..])).unwrap();
            for (a, b) in one[0].row(0).iter().zip(all[0].row(i)) {
                assert!((a - b).abs() < 1e-5, "image {i}: {a} vs {b}");
            }
        }
        assert!(all[0].row(0).iter().zip(all[0].row(1)).any(|(a, b)| (a - b).abs() > 1e-4), "images differ");
        // Both protocols find the output their CLIP column asks for.
        for protocol in [metrics::Protocol::brain_diffuser(), metrics::Protocol::mindeye()] {
            let wanted: Vec<&str> = protocol
                .feature_metrics
                .iter()
                .filter(|m| m.extractor == metrics::protocol::slots::CLIP)
                .map(|m| m.output.as_str())
                .collect();
            assert!(!wanted.is_empty(), "{} has a CLIP column", protocol.name);
            for output in wanted {
                assert!(extractor.outputs().iter().any(|o| o == output), "{}: no output '{output}'", protocol.name);
            }
        }
    }
}
