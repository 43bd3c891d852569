//! ViT-L/14 vision tower, random weights, CPU f32: ours against transformers (PyTorch) on the same
//! weights and the same input, in one run, printing a table.
//!
//! `cargo bench -p clip --bench vision_vit_l14`. Environment (all optional):
//! - `CLIP_BENCH_PYTHON`: Python with torch + transformers (default: the project's tools venv,
//!   `/root/.cache/brain-diffuser/torch-2.11.0/bin/python`); `CLIP_BENCH_PYTHON=none` skips the
//!   reference and times ours only (the table then says so);
//! - `CLIP_BENCH_BATCH` (8), `CLIP_BENCH_LAYERS` (24, fewer for a quick check), `CLIP_BENCH_ITERS`
//!   (3 timed runs after one warm-up, median reported), `CLIP_BENCH_THREADS` (all cores; both sides
//!   use the same number).

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use clip::{ClipVisionModel, VisionConfig};
use tch::{Device, Kind, Tensor};

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn write_vision_folder(dir: &Path, config: &VisionConfig, model: &ClipVisionModel) {
    let c = config;
    let json = serde_json::json!({
        "architectures": ["CLIPVisionModelWithProjection"],
        "model_type": "clip_vision_model",
        "hidden_size": c.hidden_size, "intermediate_size": c.intermediate_size,
        "num_hidden_layers": c.num_hidden_layers, "num_attention_heads": c.num_attention_heads,
        "image_size": c.image_size, "patch_size": c.patch_size, "num_channels": c.num_channels,
        "projection_dim": c.projection_dim, "layer_norm_eps": c.layer_norm_eps,
        "hidden_act": c.hidden_act, "attention_dropout": 0.0, "torch_dtype": "float32",
    });
    std::fs::write(dir.join("config.json"), serde_json::to_string_pretty(&json).unwrap()).unwrap();
    model.var_store().save(dir.join("model.safetensors")).unwrap();
}

fn main() {
    let batch = env_or("CLIP_BENCH_BATCH", 8) as i64;
    let layers = env_or("CLIP_BENCH_LAYERS", 24) as i64;
    let iters = env_or("CLIP_BENCH_ITERS", 3).max(1);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = env_or("CLIP_BENCH_THREADS", cores);
    let python = std::env::var("CLIP_BENCH_PYTHON")
        .unwrap_or_else(|_| "/root/.cache/brain-diffuser/torch-2.11.0/bin/python".to_string());
    tch::set_num_threads(threads as i32);
    tch::manual_seed(0);

    let config = VisionConfig { num_hidden_layers: layers, ..VisionConfig::vit_l14() };
    let tmp = tempfile::tempdir().unwrap();
    let model_dir = tmp.path().join("image_encoder");
    std::fs::create_dir_all(&model_dir).unwrap();
    {
        // random weights, written once so both sides run the very same model; dropped before
        // the reference runs to keep only one model in memory at a time
        let random = ClipVisionModel::new(&config, Device::Cpu, Kind::Float).unwrap();
        write_vision_folder(&model_dir, &config, &random);
    }
    let input = Tensor::randn([batch, 3, 224, 224], (Kind::Float, Device::Cpu));
    let input_path = tmp.path().join("input.safetensors");
    Tensor::write_safetensors(&[("pixel_values", &input)], &input_path).unwrap();

    // Reference: transformers in a separate process on the same files.
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/clip/bench_reference.py");
    let out_path = tmp.path().join("reference_out.safetensors");
    let reference = if python == "none" {
        None
    } else {
        let out = Command::new(&python)
            .arg(&script)
            .arg(&model_dir)
            .arg(&input_path)
            .arg(&out_path)
            .arg(iters.to_string())
            .arg(threads.to_string())
            .output()
            .expect("run the Python reference (set CLIP_BENCH_PYTHON, or =none)");
        assert!(out.status.success(), "reference failed: {}", String::from_utf8_lossy(&out.stderr));
        let line = String::from_utf8_lossy(&out.stdout);
        let report: serde_json::Value = serde_json::from_str(line.lines().last().unwrap_or("{}")).unwrap();
        Some(report)
    };

    // Ours: load the same folder (exercising the loader) and time the same input.
    let t_load = Instant::now();
    let model = ClipVisionModel::from_pretrained(&model_dir, Device::Cpu, Kind::Float).unwrap();
    let load_s = t_load.elapsed().as_secs_f64();
    let mut ours = None;
    let _ = model.forward(&input).unwrap(); // warm-up
    let mut seconds = Vec::new();
    for _ in 0..iters {
        let t0 = Instant::now();
        let out = model.forward(&input).unwrap();
        seconds.push(t0.elapsed().as_secs_f64());
        ours = Some(out);
    }
    let ours = ours.unwrap();
    let ours_s = median(seconds.clone());

    println!(
        "\nCLIP ViT-L/14 vision tower ({layers} layers), batch {batch}, CPU f32, {threads} threads, median of {iters}"
    );
    println!("| implementation | seconds / batch | runs (s) | vs PyTorch |");
    println!("|---|---|---|---|");
    match &reference {
        Some(r) => {
            let runs: Vec<f64> = r["seconds"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect();
            let ref_s = median(runs.clone());
            println!(
                "| transformers {} / torch {} ({}) | {ref_s:.3} | {runs:.3?} | 1.00x |",
                r["transformers"].as_str().unwrap_or("?"),
                r["torch"].as_str().unwrap_or("?"),
                r["attn_implementation"].as_str().unwrap_or("?"),
            );
            println!("| clip (tch) | {ours_s:.3} | {seconds:.3?} | {:.2}x |", ours_s / ref_s);
            let theirs: std::collections::HashMap<String, Tensor> =
                Tensor::read_safetensors(&out_path).unwrap().into_iter().collect();
            for (name, a, b) in [
                ("image_embeds", &ours.image_embeds, &theirs["image_embeds"]),
                ("last_hidden_state", &ours.last_hidden_state, &theirs["last_hidden_state"]),
            ] {
                let err = (a - b).abs().max().double_value(&[]);
                let scale = b.abs().max().double_value(&[]);
                println!("same output: {name} max abs diff {err:.2e} (max abs value {scale:.2e})");
            }
        }
        None => println!("| clip (tch) | {ours_s:.3} | {seconds:.3?} | reference skipped |"),
    }
    println!("loading the {layers}-layer checkpoint (safetensors, f32): {load_s:.2} s");
}
