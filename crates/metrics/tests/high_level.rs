//! Two-way identification and correlation distance against brute-force NumPy / SciPy
//! (tools/metrics/gen_fixtures.py, `gen_identification`).

mod common;

use common::{read_json, read_tensors, tensor_f64};
use metrics::high_level::{
    correlation_distances, cross_correlation, mean_correlation_distance, two_way_identification,
    two_way_identification_from_matrix,
};
use ndarray::Array2;

fn matrix_f32(t: &tch::Tensor) -> Array2<f32> {
    let s = t.size();
    let v: Vec<f32> = tensor_f64(t).into_iter().map(|x| x as f32).collect();
    Array2::from_shape_vec((s[0] as usize, s[1] as usize), v).unwrap()
}

#[test]
fn identification_and_distance_match_numpy_brute_force() {
    let tensors = read_tensors("identification.safetensors");
    for case in read_json("identification.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let gt = matrix_f32(&tensors[&format!("{name}.gt")]);
        let rec = matrix_f32(&tensors[&format!("{name}.rec")]);
        let r = cross_correlation(gt.view(), rec.view()).unwrap();
        let corner = case["r_corner"].as_array().unwrap();
        for (value, (i, j)) in corner.iter().zip([(0, 0), (0, 1), (1, 0)]) {
            assert!((r[[i, j]] - value.as_f64().unwrap()).abs() < 1e-12, "{name} R[{i},{j}]");
        }
        let score = two_way_identification(gt.view(), rec.view()).unwrap();
        assert!((score - case["two_way"].as_f64().unwrap()).abs() < 1e-12, "{name}: {score} vs {}", case["two_way"]);
        let d = correlation_distances(gt.view(), rec.view()).unwrap();
        for (a, e) in d.iter().zip(case["distances"].as_array().unwrap()) {
            assert!((a - e.as_f64().unwrap()).abs() < 1e-12, "{name}: {a} vs {e}");
        }
        for (a, e) in d.iter().zip(case["distances_float32"].as_array().unwrap()) {
            assert!((a - e.as_f64().unwrap()).abs() < 1e-6, "{name}: {a} vs float32 scipy {e}");
        }
        let mean = mean_correlation_distance(gt.view(), rec.view()).unwrap();
        assert!((mean - case["mean_distance"].as_f64().unwrap()).abs() < 1e-12);
    }
}

#[test]
fn ties_count_as_failures_like_numpy() {
    let tensors = read_tensors("identification.safetensors");
    for case in read_json("identification.json").as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let t = &tensors[&format!("{name}.tied")];
        let n = t.size()[0] as usize;
        let tied = Array2::from_shape_vec((n, n), tensor_f64(t)).unwrap();
        let has_tie = (0..n).any(|j| (0..n).any(|i| i != j && tied[[i, j]] == tied[[j, j]]));
        assert!(has_tie, "{name}: the fixture should contain exact ties");
        let score = two_way_identification_from_matrix(tied.view()).unwrap();
        assert!(
            (score - case["tied_two_way"].as_f64().unwrap()).abs() < 1e-12,
            "{name}: {score} vs {}",
            case["tied_two_way"]
        );
    }
}

#[test]
fn closed_form_cases() {
    // Identical features: every own correlation is 1 and beats every other (distinct) one. The
    // scores are exact: fractions of integer counts, with every comparison far from a tie.
    let gt = Array2::from_shape_fn((4, 6), |(i, j)| ((i * 7 + j * j * 3) % 11) as f32);
    assert_eq!(two_way_identification(gt.view(), gt.view()).unwrap(), 1.0);
    assert!(mean_correlation_distance(gt.view(), gt.view()).unwrap().abs() < 1e-12);
    // Reconstructions are the negated ground truths: distance 2 per pair.
    let neg = gt.mapv(|v| -v);
    assert!((mean_correlation_distance(gt.view(), neg.view()).unwrap() - 2.0).abs() < 1e-12);
    // An all-equal matrix: every comparison ties, the score is 0.
    assert_eq!(two_way_identification_from_matrix(Array2::<f64>::ones((3, 3)).view()).unwrap(), 0.0);
}

#[test]
fn bad_features_are_rejected() {
    let a = Array2::<f32>::zeros((3, 5));
    let b = Array2::<f32>::zeros((4, 5));
    assert!(two_way_identification(a.view(), b.view()).unwrap_err().to_string().contains("differ in shape"));
    let mut nan = Array2::<f32>::ones((3, 5));
    nan[[1, 2]] = f32::NAN;
    let msg = mean_correlation_distance(nan.view(), a.view()).unwrap_err().to_string();
    assert!(msg.contains("row 1") && msg.contains("NaN"), "{msg}");
    let one = Array2::<f32>::ones((1, 5));
    assert!(two_way_identification(one.view(), one.view()).is_err());
    assert!(two_way_identification_from_matrix(Array2::<f64>::zeros((2, 3)).view()).is_err());
}
