//! `evaluate` on 16 image pairs against the reference formulas computed in Python
//! (tools/metrics/gen_fixtures.py, `gen_evaluate`): Brain-Diffuser's evaluate_reconstruction.py and
//! MindEye's notebook formulas, torchvision networks with the shared synthetic weights, and a
//! stand-in for CLIP plugged in through the `FeatureExtractor` trait.

mod common;

use std::path::Path;

use common::{read_json, reconstruction_of, structured_image};
use metrics::networks::{FeatureExtractor, Normalization};
use metrics::protocol::slots;
use metrics::{Extractors, MetricsError, Protocol, TorchvisionExtractor, TorchvisionNetwork, evaluate_folders};
use ndarray::{Array2, ArrayView4};
use serde_json::Value;
use tch::{Device, Tensor};

/// The CLIP stand-in of the generator: 4x4 average pooling of the CLIP-normalised input.
struct PooledPixels;

impl FeatureExtractor for PooledPixels {
    fn name(&self) -> &str {
        "pooled-pixels"
    }
    fn normalization(&self) -> Normalization {
        Normalization::CLIP
    }
    fn outputs(&self) -> Vec<String> {
        vec!["final".into()]
    }
    fn extract(&self, batch: ArrayView4<f32>) -> Result<Vec<Array2<f32>>, MetricsError> {
        let shape: Vec<i64> = batch.shape().iter().map(|&s| s as i64).collect();
        let data = batch.as_standard_layout();
        let x = Tensor::from_slice(data.as_slice().unwrap()).view(shape.as_slice());
        let pooled = x.adaptive_avg_pool2d([4, 4]).flatten(1, -1);
        let values = Vec::<f32>::try_from(pooled.flatten(0, -1))?;
        Ok(vec![Array2::from_shape_vec((shape[0] as usize, 48), values).unwrap()])
    }
}

fn write_pairs(dir: &Path, n: u64, gt_size: u32, rec_size: u32) {
    std::fs::create_dir_all(dir.join("gt")).unwrap();
    std::fs::create_dir_all(dir.join("rec")).unwrap();
    for i in 0..n {
        let seed = 100 + i;
        structured_image(seed, gt_size, gt_size).save(dir.join(format!("gt/{i}.png"))).unwrap();
        let rec_seed = if i % 4 != 0 { seed } else { seed + 1 };
        let noise = 30 + 5 * i as i64;
        reconstruction_of(rec_seed, gt_size, gt_size, rec_size, rec_size, noise)
            .save(dir.join(format!("rec/{i}.png")))
            .unwrap();
    }
}

fn close(actual: f64, expected: &Value, tol: f64, what: &str) {
    let e = expected.as_f64().unwrap_or_else(|| panic!("{what} missing"));
    println!("{what}: |ours - reference| {:.3e} (tolerance {tol:e})", (actual - e).abs());
    assert!((actual - e).abs() <= tol, "{what}: ours {actual}, reference {e}");
}

struct Nets {
    alexnet: TorchvisionExtractor,
    inception: TorchvisionExtractor,
    efficientnet: TorchvisionExtractor,
    resnet: TorchvisionExtractor,
}

fn nets() -> Nets {
    let make = |n| TorchvisionExtractor::with_synthetic_weights(n, Device::Cpu).unwrap();
    Nets {
        alexnet: make(TorchvisionNetwork::AlexNet),
        inception: make(TorchvisionNetwork::InceptionV3),
        efficientnet: make(TorchvisionNetwork::EfficientNetB1),
        resnet: make(TorchvisionNetwork::SwavResNet50),
    }
}

#[test]
fn evaluate_matches_reference_formulas_under_both_protocols() {
    let fixture = read_json("evaluate.json");
    let n = fixture["pairs"].as_u64().unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_pairs(
        dir.path(),
        n,
        fixture["gt_size"].as_u64().unwrap() as u32,
        fixture["rec_size"].as_u64().unwrap() as u32,
    );
    let nets = nets();
    let clip = PooledPixels;

    // Brain-Diffuser: all eight columns.
    let extractors = Extractors::new()
        .with(slots::ALEXNET, &nets.alexnet)
        .with(slots::INCEPTION_V3, &nets.inception)
        .with(slots::EFFICIENTNET_B1, &nets.efficientnet)
        .with(slots::SWAV_RESNET50, &nets.resnet)
        .with(slots::CLIP, &clip);
    let bd = &fixture["brain_diffuser"];
    let report =
        evaluate_folders(&dir.path().join("gt"), &dir.path().join("rec"), &Protocol::brain_diffuser(), &extractors, 5)
            .unwrap();
    assert_eq!(report.images, n as usize);
    assert_eq!(report.names[..3], ["0.png".to_owned(), "1.png".into(), "2.png".into()]);
    let metrics: Vec<&str> = report.rows.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(metrics, ["PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "Inception", "CLIP", "EffNet-B", "SwAV"]);
    for (i, (p, s)) in report.pixcorr_per_image.iter().zip(&report.ssim_per_image).enumerate() {
        close(*p, &bd["pixcorr_per_image"][i], 1e-6, &format!("PixCorr of pair {i}"));
        close(*s, &bd["ssim_per_image"][i], 1e-6, &format!("SSIM of pair {i}"));
    }
    for metric in ["PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "Inception", "CLIP"] {
        close(report.value(metric).unwrap(), &bd[metric], 1e-6, metric);
    }
    // The reference takes distances with scipy on float32 features (float32 arithmetic).
    for metric in ["EffNet-B", "SwAV"] {
        close(report.value(metric).unwrap(), &bd[metric], 2e-6, metric);
    }

    // MindEye: AlexNet at 256, EffNet at 255, CLIP stand-in at 224, pixels at 425, 2-D SSIM.
    let extractors = Extractors::new()
        .with(slots::ALEXNET, &nets.alexnet)
        .with(slots::EFFICIENTNET_B1, &nets.efficientnet)
        .with(slots::CLIP, &clip);
    let me = &fixture["mindeye"];
    let report =
        evaluate_folders(&dir.path().join("gt"), &dir.path().join("rec"), &Protocol::mindeye(), &extractors, 16)
            .unwrap();
    let metrics: Vec<&str> = report.rows.iter().map(|r| r.metric.as_str()).collect();
    assert_eq!(metrics, ["PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "CLIP", "EffNet-B"]);
    for metric in ["PixCorr", "SSIM", "AlexNet(2)", "AlexNet(5)", "CLIP"] {
        close(report.value(metric).unwrap(), &me[metric], 1e-6, metric);
    }
    close(report.value("EffNet-B").unwrap(), &me["EffNet-B"], 2e-6, "EffNet-B");

    // Outputs: JSON, CSV and a summary naming the protocol.
    let out = dir.path().join("out");
    let (json, csv) = report.write(&out).unwrap();
    let parsed: Value = serde_json::from_str(&std::fs::read_to_string(json).unwrap()).unwrap();
    assert_eq!(parsed["protocol"]["name"], "mindeye");
    let csv = std::fs::read_to_string(csv).unwrap();
    assert!(csv.starts_with("protocol,images,metric,value,better,features,input_size\nmindeye,16,PixCorr,"));
    assert_eq!(csv.lines().count(), 7);
    assert!(report.summary().contains("protocol: mindeye"));
}

#[test]
fn bad_folders_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    write_pairs(dir.path(), 3, 24, 32);
    let (gt, rec) = (dir.path().join("gt"), dir.path().join("rec"));
    let none = Extractors::new();
    let bd = Protocol::brain_diffuser();
    // Pixel metrics only work without any network.
    let report = evaluate_folders(&gt, &rec, &bd, &none, 4).unwrap();
    assert_eq!(report.rows.len(), 2);

    // A reconstruction without ground truth.
    structured_image(1, 32, 32).save(rec.join("extra.png")).unwrap();
    let msg = evaluate_folders(&gt, &rec, &bd, &none, 4).unwrap_err().to_string();
    assert!(msg.contains("without ground truth") && msg.contains("extra.png"), "{msg}");
    std::fs::remove_file(rec.join("extra.png")).unwrap();

    // Reconstructions of different sizes.
    structured_image(1, 40, 40).save(rec.join("1.png")).unwrap();
    let msg = evaluate_folders(&gt, &rec, &bd, &none, 4).unwrap_err().to_string();
    assert!(msg.contains("1.png") && msg.contains("40x40"), "{msg}");

    // An unreadable image.
    std::fs::write(rec.join("1.png"), b"not a png").unwrap();
    let msg = evaluate_folders(&gt, &rec, &bd, &none, 4).unwrap_err().to_string();
    assert!(msg.contains("1.png"), "{msg}");

    // In-memory sets of different lengths, and a CLIP extractor without the protocol's output.
    let pairs = metrics::load_pairs(&gt, &gt).unwrap();
    let short = &pairs.reconstructions[..2];
    let msg = metrics::evaluate(&pairs.ground_truths, short, &pairs.names, &bd, &none, 4).unwrap_err().to_string();
    assert!(msg.contains("3 ground truths but 2 reconstructions"), "{msg}");
    struct WrongOutput;
    impl FeatureExtractor for WrongOutput {
        fn name(&self) -> &str {
            "wrong"
        }
        fn normalization(&self) -> Normalization {
            Normalization::CLIP
        }
        fn outputs(&self) -> Vec<String> {
            vec!["pooled".into()]
        }
        fn extract(&self, _: ArrayView4<f32>) -> Result<Vec<Array2<f32>>, MetricsError> {
            Ok(vec![Array2::zeros((1, 2))])
        }
    }
    let wrong = WrongOutput;
    let with_wrong = Extractors::new().with(slots::CLIP, &wrong);
    let msg = metrics::evaluate(&pairs.ground_truths, &pairs.ground_truths, &pairs.names, &bd, &with_wrong, 4)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("no output \"final\""), "{msg}");
    struct WrongRows;
    impl FeatureExtractor for WrongRows {
        fn name(&self) -> &str {
            "wrong-rows"
        }
        fn normalization(&self) -> Normalization {
            Normalization::CLIP
        }
        fn outputs(&self) -> Vec<String> {
            vec!["final".into()]
        }
        fn extract(&self, _: ArrayView4<f32>) -> Result<Vec<Array2<f32>>, MetricsError> {
            Ok(vec![Array2::zeros((1, 2))])
        }
    }
    let rows = WrongRows;
    let with_rows = Extractors::new().with(slots::CLIP, &rows);
    let msg = metrics::evaluate(&pairs.ground_truths, &pairs.ground_truths, &pairs.names, &bd, &with_rows, 4)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("1 feature rows for 3 images"), "{msg}");

    // A missing folder and an unknown protocol.
    assert!(matches!(evaluate_folders(&dir.path().join("nope"), &rec, &bd, &none, 4), Err(MetricsError::Io { .. })));
    assert!(Protocol::by_name("mindeye3").unwrap_err().to_string().contains("mindeye3"));
}

/// torch's bilinear resize (`F.interpolate`, align_corners = false, no antialias) of `img` to
/// `side` x `side`, normalised with `norm`, in f64: the closed form (half-pixel centres, source
/// index clamped at 0, last pixel repeated), CHW.
fn torch_bilinear_reference(img: &image::RgbImage, side: usize, norm: Normalization) -> Vec<f64> {
    let taps = |inp: usize| -> Vec<(usize, usize, f64)> {
        (0..side)
            .map(|d| {
                let src = ((d as f64 + 0.5) * inp as f64 / side as f64 - 0.5).max(0.0);
                let i0 = (src.floor() as usize).min(inp - 1);
                (i0, (i0 + 1).min(inp - 1), src - i0 as f64)
            })
            .collect()
    };
    let (xs, ys) = (taps(img.width() as usize), taps(img.height() as usize));
    let px = |x: usize, y: usize, c: usize| f64::from(img.get_pixel(x as u32, y as u32)[c]) / 255.0;
    let mut out = Vec::with_capacity(3 * side * side);
    for c in 0..3 {
        for &(y0, y1, ly) in &ys {
            for &(x0, x1, lx) in &xs {
                let top = px(x0, y0, c) * (1.0 - lx) + px(x1, y0, c) * lx;
                let bottom = px(x0, y1, c) * (1.0 - lx) + px(x1, y1, c) * lx;
                let v = top * (1.0 - ly) + bottom * ly;
                out.push((v - f64::from(norm.mean[c])) / f64::from(norm.std[c]));
            }
        }
    }
    out
}

#[test]
fn network_inputs_equal_torchvision_preprocessing() {
    use metrics::evaluate::preprocess_batch;
    use metrics::protocol::NetworkResize;
    let fixture = read_json("evaluate.json");
    let size = fixture["gt_size"].as_u64().unwrap() as u32;
    let gts: Vec<_> = (0..3).map(|i| structured_image(100 + i, size, size)).collect();
    for (key, side, resize, norm) in [
        ("bd_imagenet_224", 224, NetworkResize::PilBilinear, Normalization::IMAGENET),
        ("bd_clip_224", 224, NetworkResize::PilBilinear, Normalization::CLIP),
        ("me_imagenet_255", 255, NetworkResize::TorchBilinear, Normalization::IMAGENET),
    ] {
        let expected = &fixture["preprocess"][key];
        let batch = preprocess_batch(&gts, side, resize, norm).unwrap();
        assert_eq!(batch.shape(), [3, 3, side, side], "{key}");
        let sum: f64 = batch.iter().map(|&v| f64::from(v)).sum();
        close(sum, &expected["sum"], 1e-6 * batch.len() as f64, key);
        match resize {
            // Bit-identical on any CPU: Pillow's integer fixed-point resize, then u8 / 255 and
            // (x - mean) / std, correctly rounded scalar f32 operations in Rust.
            NetworkResize::PilBilinear => {
                let bytes: Vec<u8> = batch.iter().flat_map(|v| v.to_le_bytes()).collect();
                assert_eq!(common::bytes_fnv(&bytes), expected["fnv"].as_str().unwrap(), "{key}: not bit-identical");
            }
            // libtorch's f32 upsample kernel: its bits depend on the CPU (fused multiply-adds in
            // the AVX2/AVX-512 kernels, none in the baseline ones) and on the thread count, so the
            // fixture's digest only holds on the machine that wrote it. Against the f64 closed form
            // instead. torch's own f32 kernel differs from its f64 kernel by up to 4.2e-5 in [0, 1]
            // units (f32 source coordinates and weights; random images 425 or 512 -> 255, measured
            // with torch 2.11), 1.9e-4 after dividing by std 0.225: tolerance 5e-4. A misplaced
            // pixel centre or align_corners = true is off by more than 1e-2 on these images.
            NetworkResize::TorchBilinear => {
                let mut worst = 0f64;
                for (n, img) in gts.iter().enumerate() {
                    let want = torch_bilinear_reference(img, side, norm);
                    let got = batch.slice(ndarray::s![n, .., .., ..]);
                    for (a, b) in got.iter().zip(&want) {
                        worst = worst.max((f64::from(*a) - b).abs());
                    }
                }
                println!("{key}: max |ours - closed form| {worst:.3e}");
                assert!(worst <= 5e-4, "{key}: differs from the closed-form bilinear resize by {worst:e}");
            }
        }
    }
}

/// The shuffled control scores every shifted pair as `evaluate` scores it when handed that
/// pairing (brute force, one `evaluate` per pair), and perfect reconstructions lie far above it.
#[test]
fn shuffled_control_equals_evaluating_each_shifted_pairing() {
    let n = 6;
    let gt: Vec<image::RgbImage> = (0..n).map(|i| structured_image(i as u64, 24, 24)).collect();
    let rec: Vec<image::RgbImage> = (0..n).map(|i| reconstruction_of(i as u64, 24, 24, 16, 16, 30)).collect();
    for protocol in [Protocol::brain_diffuser(), Protocol::mindeye()] {
        let control = metrics::shuffled_control(&gt, &rec, &protocol, &[1, 4]).unwrap();
        let score = |pairs: &[(usize, usize)]| {
            let (mut p, mut s) = (Vec::new(), Vec::new());
            for &(g, r) in pairs {
                // `evaluate` needs two pairs: score the pair twice.
                let names = vec!["a".to_owned(), "b".to_owned()];
                let report = metrics::evaluate(
                    &[gt[g].clone(), gt[g].clone()],
                    &[rec[r].clone(), rec[r].clone()],
                    &names,
                    &protocol,
                    &Extractors::new(),
                    1,
                )
                .unwrap();
                p.push(report.pixcorr_per_image[0]);
                s.push(report.ssim_per_image[0]);
            }
            (p, s)
        };
        let matched: Vec<(usize, usize)> = (0..n).map(|i| (i, i)).collect();
        let shuffled: Vec<(usize, usize)> =
            [1, 4].iter().flat_map(|&k| (0..n).map(move |i| (i, (i + k) % n))).collect();
        let (mp, ms) = score(&matched);
        let (sp, ss) = score(&shuffled);
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let sd = |v: &[f64]| (v.iter().map(|x| (x - mean(v)).powi(2)).sum::<f64>() / (v.len() - 1) as f64).sqrt();
        let near = |a: f64, b: f64, what: &str| assert!((a - b).abs() < 1e-12, "{}: {what} {a} vs {b}", protocol.name);
        near(control.pixcorr, mean(&mp), "PixCorr");
        near(control.ssim, mean(&ms), "SSIM");
        near(control.shuffled_pixcorr, mean(&sp), "shuffled PixCorr");
        near(control.shuffled_ssim, mean(&ss), "shuffled SSIM");
        near(control.null_se_pixcorr, sd(&sp) / (n as f64).sqrt(), "null SE of PixCorr");
        near(control.null_se_ssim, sd(&ss) / (n as f64).sqrt(), "null SE of SSIM");
        let perfect = metrics::shuffled_control(&gt, &gt, &protocol, &[1, 2, 3]).unwrap();
        assert!((perfect.pixcorr - 1.0).abs() < 1e-9 && (perfect.ssim - 1.0).abs() < 1e-9, "{perfect:?}");
        assert!(perfect.margins().0 > 5.0 && perfect.margins().1 > 5.0, "{perfect:?}");
    }
    for bad in [&[][..], &[0], &[6]] {
        let err = metrics::shuffled_control(&gt, &rec, &Protocol::brain_diffuser(), bad).unwrap_err().to_string();
        assert!(err.contains("each in 1..6"), "{err}");
    }
}
