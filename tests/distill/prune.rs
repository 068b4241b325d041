//! `model prune`: the student folder loads in the engine, its kept layers carry the
//! teacher's weights (renumbered), and it generates an image.

use crate::support::max_abs_diff;

use std::path::Path;
use std::process::Command;

use arenaxl::distill::plan::{Keep, Plan};
use arenaxl::engine::config::{read_json, UNetConfig};
use arenaxl::engine::nn::Kernels;
use arenaxl::engine::presets::init_model_folder;
use arenaxl::engine::unet::UNet2DConditionModel;
use candle_core::{DType, Device};

fn tensors(dir: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(
        dir.join("unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap()
}

fn same(a: &candle_core::Tensor, b: &candle_core::Tensor) -> bool {
    max_abs_diff(a, b) == 0.0
}

#[test]
fn pruned_student_takes_teacher_weights_by_name_and_generates() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    init_model_folder("tiny-sdxl", &teacher, 3).unwrap();
    let out = tmp.path().join("student");
    let run = Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args([
            "model",
            "prune",
            "--plan",
            "vega",
            "--keep",
            "even",
            "--teacher",
        ])
        .arg(&teacher)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for f in [
        "model_index.json",
        "vae/config.json",
        "text_encoder_2/model.safetensors",
        "tokenizer/vocab.json",
        "scheduler/scheduler_config.json",
    ] {
        assert!(out.join(f).is_file(), "{f} copied");
    }
    let cfg: UNetConfig = read_json(&out.join("unet/config.json")).unwrap();
    assert_eq!(cfg.mid_block_type.as_deref(), Some("UNetMidBlock2D"));

    let (t, s) = (tensors(&teacher), tensors(&out));
    // Teacher down block 2 layer 1 has 3 blocks; keep even keeps 0 and 2.
    let k = "attn1.to_q.weight";
    assert!(same(
        &s[&format!("down_blocks.2.attentions.1.transformer_blocks.1.{k}")],
        &t[&format!("down_blocks.2.attentions.1.transformer_blocks.2.{k}")]
    ));
    assert!(same(
        &s["mid_block.resnets.0.conv1.weight"],
        &t["mid_block.resnets.0.conv1.weight"]
    ));
    assert!(!s.contains_key("mid_block.attentions.0.proj_in.weight"));
    assert!(!s.contains_key("down_blocks.2.attentions.1.transformer_blocks.2.attn1.to_q.weight"));

    // Loads in the engine (every parameter present, shapes right) and generates.
    let unet = UNet2DConditionModel::load(
        &out.join("unet"),
        DType::F32,
        &Device::Cpu,
        Kernels::default(),
    )
    .unwrap();
    assert_eq!(
        unet.layout.mid,
        arenaxl::engine::unet::layout::MidSpec::Resnet { ch: 32 }
    );
    let img = tmp.path().join("img.png");
    let gen = Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args(["generate", "--model"])
        .arg(&out)
        .args([
            "--prompt",
            "a photo of a cat",
            "--steps",
            "2",
            "--seed",
            "1",
            "--width",
            "64",
            "--height",
            "64",
            "--out",
        ])
        .arg(&img)
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    assert!(image::open(&img).is_ok());
}

#[test]
fn prune_rejects_a_plan_that_does_not_fit() {
    let tmp = tempfile::tempdir().unwrap();
    let teacher = tmp.path().join("teacher");
    init_model_folder("tiny-sdxl", &teacher, 3).unwrap();
    let cfg: UNetConfig = read_json(&teacher.join("unet/config.json")).unwrap();
    let e = Plan::builtin("ssd-1b")
        .unwrap()
        .student("ssd-1b", &cfg, Path::new("t"), Keep::First)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains("depth 4 is larger than the teacher's 3"),
        "{e}"
    );
}
