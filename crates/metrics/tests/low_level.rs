//! PixCorr, SSIM and Pillow resampling against Pillow / NumPy / scikit-image fixtures
//! (tools/metrics/gen_fixtures.py).

mod common;

use common::{bytes_fnv, image_from_spec, read_json};
use metrics::low_level::{SsimParams, pearson, pearson_u8, ssim_columns_1d, ssim_gaussian_2d};
use metrics::pixels::{GrayF64, RgbF64};
use pil_resample::{Filter as PilFilter, resize as pil_resize};

const TOL: f64 = 1e-6;

#[test]
fn image_recipes_match_python() {
    for case in read_json("low_level.json").as_array().expect("list") {
        assert_eq!(
            bytes_fnv(image_from_spec(&case["gt"]).as_raw()),
            case["gt_fnv"].as_str().unwrap(),
            "{}",
            case["gt"]
        );
        assert_eq!(
            bytes_fnv(image_from_spec(&case["rec"]).as_raw()),
            case["rec_fnv"].as_str().unwrap(),
            "{}",
            case["rec"]
        );
    }
}

/// Byte-identical on any CPU: Pillow's fixed-point integer arithmetic, reproduced step by step.
#[test]
fn pil_resize_is_byte_identical_to_pillow() {
    for case in read_json("low_level.json").as_array().expect("list") {
        let gt = image_from_spec(&case["gt"]);
        let rec = image_from_spec(&case["rec"]);
        let to_gt = pil_resize(&rec, gt.width(), gt.height(), PilFilter::Bicubic).unwrap();
        assert_eq!(
            bytes_fnv(to_gt.as_raw()),
            case["pil_bicubic_to_gt_fnv"].as_str().unwrap(),
            "bicubic {}",
            case["rec"]
        );
        let narrow = pil_resize(&rec, 29, rec.height(), PilFilter::Bilinear).unwrap();
        assert_eq!(
            bytes_fnv(narrow.as_raw()),
            case["pil_bilinear_width29_fnv"].as_str().unwrap(),
            "bilinear {}",
            case["rec"]
        );
        let low = pil_resize(&rec, rec.width(), 23, PilFilter::Bilinear).unwrap();
        assert_eq!(
            bytes_fnv(low.as_raw()),
            case["pil_bilinear_height23_fnv"].as_str().unwrap(),
            "bilinear {}",
            case["rec"]
        );
        let (uw, uh) = (case["up_size"][0].as_u64().unwrap() as u32, case["up_size"][1].as_u64().unwrap() as u32);
        let up = pil_resize(&gt, uw, uh, PilFilter::Bicubic).unwrap();
        assert_eq!(bytes_fnv(up.as_raw()), case["pil_bicubic_up_fnv"].as_str().unwrap(), "upsample {}", case["gt"]);
    }
}

#[test]
fn pixcorr_and_ssim_match_numpy_and_scikit_image() {
    let params = SsimParams::default();
    for case in read_json("low_level.json").as_array().expect("list") {
        let gt = image_from_spec(&case["gt"]);
        let rec = pil_resize(&image_from_spec(&case["rec"]), gt.width(), gt.height(), PilFilter::Bicubic).unwrap();
        let (g, r) = (RgbF64::from_rgb8(&gt), RgbF64::from_rgb8(&rec));
        let (gg, rg) = (g.to_gray(), r.to_gray());
        assert!((gg.data.iter().sum::<f64>() - case["gray_sum"].as_f64().unwrap()).abs() < 1e-8 * gg.data.len() as f64);
        let pc = pearson(&g.data, &r.data).unwrap();
        assert!((pc - case["pixcorr"].as_f64().unwrap()).abs() < TOL, "pixcorr {pc} vs {}", case["pixcorr"]);
        let exact = pearson_u8(gt.as_raw(), rec.as_raw()).unwrap();
        assert!((exact - case["pixcorr"].as_f64().unwrap()).abs() < 1e-12, "integer pixcorr {exact}");
        assert_eq!(GrayF64::from_rgb8(&gt), gg); // the same scalar formula on the same bytes
        if let Some(expected) = case["ssim_cols"].as_f64() {
            let s = ssim_columns_1d(&rg, &gg, &params).unwrap();
            assert!((s - expected).abs() < TOL, "column SSIM {s} vs {expected} for {}", case["gt"]);
        }
        if let Some(expected) = case["ssim_2d"].as_f64() {
            let s = ssim_gaussian_2d(&rg, &gg, &params).unwrap();
            assert!((s - expected).abs() < TOL, "2-D SSIM {s} vs {expected} for {}", case["gt"]);
        }
    }
}

#[test]
fn mindeye_pixel_pipeline_matches_torch_and_scikit_image() {
    let params = SsimParams::default();
    for case in read_json("low_level.json").as_array().expect("list") {
        let size = case["mindeye_size"].as_u64().unwrap() as usize;
        let g = RgbF64::from_rgb8(&image_from_spec(&case["gt"])).resize_bilinear_torch(size, size).unwrap();
        let r = RgbF64::from_rgb8(&image_from_spec(&case["rec"])).resize_bilinear_torch(size, size).unwrap();
        let pc = pearson(&g.data, &r.data).unwrap();
        assert!((pc - case["mindeye_pixcorr"].as_f64().unwrap()).abs() < TOL);
        let s = ssim_gaussian_2d(&r.to_gray(), &g.to_gray(), &params).unwrap();
        assert!((s - case["mindeye_ssim_2d"].as_f64().unwrap()).abs() < TOL, "{s} vs {}", case["mindeye_ssim_2d"]);
    }
}

#[test]
fn ssim_of_an_image_with_itself_is_one() {
    let img = RgbF64::from_rgb8(&common::structured_image(9, 40, 33)).to_gray();
    let p = SsimParams::default();
    assert!((ssim_gaussian_2d(&img, &img, &p).unwrap() - 1.0).abs() < 1e-12);
    assert!((ssim_columns_1d(&img, &img, &p).unwrap() - 1.0).abs() < 1e-12);
}

#[test]
fn bad_inputs_are_rejected() {
    let p = SsimParams::default();
    let a = GrayF64 { width: 20, height: 20, data: vec![0.5; 400] };
    let b = GrayF64 { width: 21, height: 20, data: vec![0.5; 420] };
    assert!(ssim_gaussian_2d(&a, &b, &p).unwrap_err().to_string().contains("differ in size"));
    let tiny = GrayF64 { width: 5, height: 5, data: vec![0.5; 25] };
    assert!(ssim_columns_1d(&tiny, &tiny, &p).unwrap_err().to_string().contains("window"));
    let bad = SsimParams { sigma: f64::NAN, ..p };
    assert!(ssim_gaussian_2d(&a, &a, &bad).is_err());
    assert!(pearson(&[1.0, 2.0], &[1.0]).is_err());
    assert!(pearson(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]).unwrap().is_nan());
    let img = common::structured_image(1, 8, 8);
    assert!(pil_resize(&img, 0, 4, PilFilter::Bicubic).is_err());
}
