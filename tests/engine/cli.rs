//! `arenaxl generate`, `model` and `bench unet` driven through the CLI parser, in-process.

use crate::support::fixture;

use arenaxl::cli::{run, Cli};
use candle_core::{DType, Device};
use clap::Parser;

fn arenaxl(args: &[&str]) -> anyhow::Result<()> {
    let mut argv = vec!["arenaxl"];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv)?)
}

#[test]
fn generate_with_latents_reproduces_diffusers() {
    let dir = fixture("tiny-sdxl");
    let refs = candle_core::safetensors::load(dir.join("cases.safetensors"), &Device::Cpu).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let latents = tmp.path().join("latents.safetensors");
    candle_core::safetensors::save(
        &std::collections::HashMap::from([("latents".to_string(), refs["case0.latents"].clone())]),
        &latents,
    )
    .unwrap();
    let out = tmp.path().join("cat.png");
    // Case 0 of tools/engine_fixtures.py.
    arenaxl(&[
        "generate",
        "--model",
        dir.to_str().unwrap(),
        "--prompt",
        "a photo of a cat",
        "--steps",
        "4",
        "--guidance",
        "5",
        "--width",
        "64",
        "--height",
        "64",
        "--scheduler",
        "euler",
        "--latents",
        latents.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let img = image::open(&out).unwrap().to_rgb8();
    let want = refs["case0.image"]
        .to_dtype(DType::F32)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let max = img
        .as_raw()
        .iter()
        .zip(&want)
        .map(|(&a, &b)| (a as f32 - b).abs())
        .fold(0.0, f32::max);
    assert!(max <= 2.0, "max difference {max}");
}

#[test]
fn init_then_generate_a_batch_and_info() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("vega");
    arenaxl(&[
        "model",
        "init",
        "--preset",
        "tiny-vega",
        "--out",
        model.to_str().unwrap(),
        "--seed",
        "1",
    ])
    .unwrap();
    arenaxl(&["model", "info", model.to_str().unwrap(), "--json"]).unwrap();
    arenaxl(&["model", "info", "--preset", "sdxl"]).unwrap();
    let out = tmp.path().join("img.png");
    arenaxl(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a dog",
        "--prompt",
        "a cat",
        "--steps",
        "2",
        "--width",
        "64",
        "--height",
        "64",
        "--scheduler",
        "dpmpp-2m",
        "--dtype",
        "f16",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap();
    let err = arenaxl(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a",
        "--dtype",
        "bf16",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("bf16 needs a CUDA device"));
    assert!(tmp.path().join("img-0.png").is_file() && tmp.path().join("img-1.png").is_file());
}

#[test]
fn generate_errors_name_the_file_and_field() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tmp.path().join("m");
    arenaxl(&[
        "model",
        "init",
        "--preset",
        "tiny-sdxl",
        "--out",
        model.to_str().unwrap(),
    ])
    .unwrap();
    let sched = model.join("scheduler/scheduler_config.json");
    let text = std::fs::read_to_string(&sched)
        .unwrap()
        .replace("\"leading\"", "\"sideways\"");
    std::fs::write(&sched, text).unwrap();
    let out = tmp.path().join("x.png");
    let err = arenaxl(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a",
        "--steps",
        "1",
        "--width",
        "64",
        "--height",
        "64",
        "--out",
        out.to_str().unwrap(),
    ])
    .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("scheduler_config.json") && msg.contains("timestep_spacing"),
        "{msg}"
    );

    let err = arenaxl(&[
        "generate",
        "--model",
        "/nonexistent/model",
        "--prompt",
        "a",
        "--out",
        "x.png",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("/nonexistent/model/model_index.json"));
    let err = arenaxl(&[
        "generate",
        "--model",
        model.to_str().unwrap(),
        "--prompt",
        "a",
        "--scheduler",
        "lms",
        "--out",
        "x.png",
    ])
    .unwrap_err();
    assert!(format!("{err:#}").contains("lms"));
}

#[test]
fn bench_unet_runs_on_a_tiny_preset() {
    arenaxl(&[
        "bench",
        "unet",
        "--preset",
        "tiny-ssd-1b",
        "--iters",
        "1",
        "--json",
    ])
    .unwrap();
    assert!(arenaxl(&["bench", "unet", "--preset", "nope"]).is_err());
}
