//! End-to-end generation against diffusers' images on the committed fixtures
//! (tools/engine_fixtures.py), and the pipeline's error reporting.

use crate::support::fixture;

use arenaxl::engine::{EngineError, GenerateRequest, Pipeline, SchedulerKind};
use candle_core::{DType, Device};

#[derive(serde::Deserialize)]
struct Case {
    prompts: Vec<String>,
    negative: Option<String>,
    steps: usize,
    guidance: f64,
    width: usize,
    height: usize,
    scheduler: String,
    seed: u64,
}

fn check_family(name: &str) {
    let dir = fixture(name);
    let dev = Device::Cpu;
    let mut pipe = Pipeline::load(&dir, &dev, DType::F32).unwrap();
    let refs = candle_core::safetensors::load(dir.join("cases.safetensors"), &dev).unwrap();
    let cases: Vec<Case> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    assert!(!cases.is_empty());
    for (i, c) in cases.iter().enumerate() {
        let req = GenerateRequest {
            prompts: c.prompts.clone(),
            negative_prompt: c.negative.clone(),
            steps: c.steps,
            guidance: c.guidance,
            seed: c.seed,
            width: c.width,
            height: c.height,
            scheduler: Some(c.scheduler.parse().unwrap()),
            latents: Some(refs[&format!("case{i}.latents")].clone()),
        };
        let mut calls = 0;
        let images = pipe.generate(&req, &mut |_, _| calls += 1).unwrap();
        assert_eq!(calls, c.steps);
        let want = refs[&format!("case{i}.image")]
            .to_dtype(DType::F32)
            .unwrap();
        let want = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got: Vec<f32> = images
            .iter()
            .flat_map(|im| im.as_raw().iter().map(|&v| v as f32))
            .collect();
        assert_eq!(got.len(), want.len(), "{name} case {i}: size");
        let diffs: Vec<f32> = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).collect();
        let max = diffs.iter().copied().fold(0.0, f32::max);
        let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
        assert!(
            max <= 2.0 && mean <= 0.25,
            "{name} case {i} ({}): max {max}, mean {mean}",
            c.scheduler
        );
        // A non-trivial image, so that agreement means something.
        let spread =
            want.iter().copied().fold(0.0, f32::max) - want.iter().copied().fold(255.0, f32::min);
        assert!(spread > 20.0, "{name} case {i}: reference image is flat");
    }
}

#[test]
fn tiny_sdxl_images_match_diffusers() {
    check_family("tiny-sdxl");
}

#[test]
fn tiny_ssd_1b_images_match_diffusers() {
    check_family("tiny-ssd-1b");
}

#[test]
fn tiny_vega_images_match_diffusers() {
    check_family("tiny-vega");
}

#[test]
fn euler_ancestral_is_reproducible_per_seed() {
    let mut pipe = Pipeline::load(&fixture("tiny-vega"), &Device::Cpu, DType::F32).unwrap();
    let mut req = GenerateRequest {
        prompts: vec!["a red dog".into()],
        steps: 3,
        guidance: 3.0,
        seed: 11,
        width: 64,
        height: 64,
        scheduler: Some(SchedulerKind::EulerAncestral),
        ..Default::default()
    };
    let a = pipe.generate(&req, &mut |_, _| {}).unwrap();
    let b = pipe.generate(&req, &mut |_, _| {}).unwrap();
    assert_eq!(a[0].as_raw(), b[0].as_raw());
    req.seed = 12;
    let c = pipe.generate(&req, &mut |_, _| {}).unwrap();
    assert_ne!(a[0].as_raw(), c[0].as_raw());
}

#[test]
fn bad_sizes_are_rejected() {
    let mut pipe = Pipeline::load(&fixture("tiny-vega"), &Device::Cpu, DType::F32).unwrap();
    let req = GenerateRequest {
        prompts: vec!["a cat".into()],
        steps: 1,
        width: 60,
        height: 64,
        ..Default::default()
    };
    let err = pipe.generate(&req, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("multiples of 8"), "{err}");
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &p);
        } else {
            std::fs::copy(e.path(), p).unwrap();
        }
    }
}

#[test]
fn broken_folders_name_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("model");
    copy_dir(&fixture("tiny-vega"), &dir);

    // An inconsistent UNet config.
    let cfg = dir.join("unet/config.json");
    let original = std::fs::read_to_string(&cfg).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&original).unwrap();
    v["layers_per_block"] = serde_json::json!([2, 2]);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let err = Pipeline::load(&dir, &Device::Cpu, DType::F32)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, EngineError::Field { .. }), "{msg}");
    assert!(
        msg.contains("unet/config.json") && msg.contains("layers_per_block"),
        "{msg}"
    );
    std::fs::write(&cfg, &original).unwrap();

    // A cross-attention width that the text encoders do not produce.
    v = serde_json::from_str(&original).unwrap();
    v["cross_attention_dim"] = serde_json::json!(48);
    std::fs::write(&cfg, v.to_string()).unwrap();
    let msg = load_error(&dir);
    assert!(
        msg.contains("unet/config.json") && msg.contains("cross_attention_dim"),
        "{msg}"
    );
    std::fs::write(&cfg, &original).unwrap();

    // A missing required field.
    v = serde_json::from_str(&original).unwrap();
    v.as_object_mut().unwrap().remove("block_out_channels");
    std::fs::write(&cfg, v.to_string()).unwrap();
    let msg = load_error(&dir);
    assert!(
        msg.contains("unet/config.json") && msg.contains("block_out_channels"),
        "{msg}"
    );
    std::fs::write(&cfg, &original).unwrap();

    // Missing weights.
    std::fs::remove_file(dir.join("vae/diffusion_pytorch_model.safetensors")).unwrap();
    let msg = load_error(&dir);
    assert!(
        msg.contains("vae/diffusion_pytorch_model.safetensors"),
        "{msg}"
    );

    // A component missing from model_index.json.
    let idx = dir.join("model_index.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&idx).unwrap()).unwrap();
    v.as_object_mut().unwrap().remove("tokenizer_2");
    std::fs::write(&idx, v.to_string()).unwrap();
    let msg = load_error(&dir);
    assert!(
        msg.contains("model_index.json") && msg.contains("tokenizer_2"),
        "{msg}"
    );
}

#[test]
fn f16_stays_close_to_diffusers_f32() {
    let dir = fixture("tiny-sdxl");
    let dev = Device::Cpu;
    let mut pipe = Pipeline::load(&dir, &dev, DType::F16).unwrap();
    assert_eq!(pipe.vae.dtype, DType::F32, "force_upcast decodes in f32");
    let refs = candle_core::safetensors::load(dir.join("cases.safetensors"), &dev).unwrap();
    // Case 0: Euler, guidance 5, 64x64.
    let req = GenerateRequest {
        prompts: vec!["a photo of a cat".into()],
        steps: 4,
        guidance: 5.0,
        seed: 1,
        width: 64,
        height: 64,
        scheduler: Some(SchedulerKind::Euler),
        latents: Some(refs["case0.latents"].clone()),
        ..Default::default()
    };
    let img = pipe.generate(&req, &mut |_, _| {}).unwrap();
    let want = refs["case0.image"]
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let diffs: Vec<f32> = img[0]
        .as_raw()
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (a as f32 - b).abs())
        .collect();
    let mean = diffs.iter().sum::<f32>() / diffs.len() as f32;
    let max = diffs.iter().copied().fold(0.0, f32::max);
    println!("f16 vs diffusers f32: max {max}, mean {mean}");
    assert!(mean < 1.0 && max <= 6.0, "max {max}, mean {mean}");
}

#[test]
fn pipeline_can_move_to_a_worker_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Pipeline>();
    assert_send::<GenerateRequest>();
    assert_send::<EngineError>();
}

/// The message of loading a broken pipeline folder (which must fail).
fn load_error(dir: &std::path::Path) -> String {
    Pipeline::load(dir, &Device::Cpu, DType::F32)
        .err()
        .expect("loading must fail")
        .to_string()
}
