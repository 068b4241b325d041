//! Evidence for the training step on a tiny teacher (CPU, seconds): the loss goes down,
//! the student's held-out output MSE against the teacher at least halves, feature loss does
//! no worse than output loss alone, and resume is exact.

use crate::support::max_abs_diff;

use std::path::Path;
use std::time::Instant;

use arenaxl::distill::dataset::Dataset;
use arenaxl::distill::loss::LossConfig;
use arenaxl::distill::optim::AdamWConfig;
use arenaxl::distill::plan::{Keep, Plan};
use arenaxl::distill::prune::initial_weights;
use arenaxl::distill::train::{TrainConfig, Trainer};
use arenaxl::engine::config::{read_json, UNetConfig};
use arenaxl::engine::nn::Kernels;
use arenaxl::engine::presets::init_model_folder;
use arenaxl::engine::unet::UNet2DConditionModel;
use candle_core::{DType, Device, Tensor};

fn dataset(n: usize, seed: u64) -> Dataset {
    let dev = Device::Cpu;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    let r = |shape: &[usize], rng: &mut rand::rngs::StdRng| {
        arenaxl::engine::noise::randn(rng, &candle_core::Shape::from(shape.to_vec()), &dev).unwrap()
    };
    Dataset {
        latents: r(&[n, 4, 8, 8], &mut rng),
        embeds: r(&[n, 8, 64], &mut rng),
        pooled: r(&[n, 32], &mut rng),
        time_ids: Tensor::new(&[64f32, 64., 0., 0., 64., 64.], &dev)
            .unwrap()
            .unsqueeze(0)
            .unwrap()
            .repeat((n, 1))
            .unwrap(),
    }
}

fn trainer(teacher_dir: &Path, loss: LossConfig, steps: u64) -> Trainer {
    let cfg_file = teacher_dir.join("unet/config.json");
    let cfg: UNetConfig = read_json(&cfg_file).unwrap();
    let student = Plan::builtin("vega")
        .unwrap()
        .student("vega", &cfg, &cfg_file, Keep::First)
        .unwrap();
    let weights = initial_weights(&teacher_dir.join("unet"), &student).unwrap();
    let teacher = UNet2DConditionModel::load(
        &teacher_dir.join("unet"),
        DType::F32,
        &Device::Cpu,
        Kernels { fused: true },
    )
    .unwrap();
    let cfg = TrainConfig {
        steps,
        batch_size: 8,
        grad_accum: 1,
        adamw: AdamWConfig {
            lr: 3e-4,
            weight_decay: 0.0,
            ..Default::default()
        },
        warmup_steps: 2,
        max_grad_norm: 1.0,
        loss,
        seed: 7,
        ..Default::default()
    };
    Trainer::new(
        teacher,
        &student,
        student.map.clone(),
        &weights,
        cfg,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap()
}

fn teacher() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    init_model_folder("tiny-sdxl", &tmp.path().join("t"), 5).unwrap();
    tmp
}

/// A tiny teacher first trained for `steps` to predict noise (task loss only, the whole
/// UNet kept: an identity "plan" of tiny-sdxl's depths). A random-weight UNet is a rough
/// function whose every transformer block matters as much as any other, which no pruned
/// student can follow; a teacher that has learnt something, like a real one, has the
/// smoother, partly redundant layers that distillation relies on.
fn trained_teacher(steps: u64) -> tempfile::TempDir {
    let tmp = teacher();
    let dir = tmp.path().join("t");
    let cfg_file = dir.join("unet/config.json");
    let cfg: UNetConfig = read_json(&cfg_file).unwrap();
    let whole: Plan = serde_json::from_str(
        r#"{"down": [null, [2, 2], [3, 3]], "up": [[3, 3, 3], [2, 2, 2], null], "mid": "cross_attn"}"#,
    )
    .unwrap();
    let unet = whole
        .student("whole", &cfg, &cfg_file, Keep::First)
        .unwrap();
    assert_eq!(
        unet.parameters().unwrap(),
        arenaxl::distill::plan::unet_parameters(
            &cfg,
            &arenaxl::engine::unet::layout::UNetLayout::resolve(&cfg, &cfg_file).unwrap()
        )
        .unwrap(),
        "the identity plan keeps every parameter"
    );
    let weights = initial_weights(&dir.join("unet"), &unet).unwrap();
    let random = UNet2DConditionModel::load(
        &dir.join("unet"),
        DType::F32,
        &Device::Cpu,
        Kernels { fused: true },
    )
    .unwrap();
    let cfg = TrainConfig {
        steps,
        batch_size: 8,
        adamw: AdamWConfig {
            lr: 1e-3,
            weight_decay: 0.0,
            ..Default::default()
        },
        loss: LossConfig {
            lambda_task: 1.0,
            lambda_out: 0.0,
            lambda_feat: 0.0,
            ..Default::default()
        },
        seed: 11,
        ..Default::default()
    };
    let mut t = Trainer::new(
        random,
        &unet,
        unet.map.clone(),
        &weights,
        cfg,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let data = dataset(256, 99);
    let task: Vec<f32> = (0..steps)
        .map(|_| t.train_step(&data).unwrap().task)
        .collect();
    println!(
        "teacher trained to predict noise: task loss {:.3} -> {:.3} ({steps} steps)",
        task[..5].iter().sum::<f32>() / 5.0,
        task[task.len() - 5..].iter().sum::<f32>() / 5.0
    );
    candle_core::safetensors::save(
        &t.export_weights().unwrap(),
        dir.join("unet/diffusion_pytorch_model.safetensors"),
    )
    .unwrap();
    tmp
}

const STEPS: u64 = 40;

/// A random-weight teacher does not predict noise, so the task term would pull the
/// student away from it; the evidence about matching the teacher leaves it out.
fn distill_only() -> LossConfig {
    LossConfig {
        lambda_task: 0.0,
        lambda_feat: 0.5,
        ..Default::default()
    }
}

fn train(t: &mut Trainer, data: &Dataset) -> Vec<f32> {
    (0..t.cfg.steps)
        .map(|_| t.train_step(data).unwrap().loss)
        .collect()
}

fn held_out_run(tmp: &tempfile::TempDir, samples: usize, steps: u64) -> (f32, f32, f32, f32) {
    let (held, data) = dataset(samples, 1).split(8).unwrap();
    let start = Instant::now();
    let mut t = trainer(&tmp.path().join("t"), distill_only(), steps);
    let before = t.evaluate(&held).unwrap();
    let losses = train(&mut t, &data);
    let after = t.evaluate(&held).unwrap();
    let head: f32 = losses[..5].iter().sum::<f32>() / 5.0;
    let tail: f32 = losses[losses.len() - 5..].iter().sum::<f32>() / 5.0;
    println!(
        "loss first 5 {head:.4} last 5 {tail:.4}; held-out output MSE {:.5} -> {:.5}, \
         feature MSE {:.4} -> {:.4} ({steps} steps, {:.1}s)",
        before.output_mse,
        after.output_mse,
        before.feature_mse,
        after.feature_mse,
        start.elapsed().as_secs_f64()
    );
    (head, tail, before.output_mse, after.output_mse)
}

#[test]
fn loss_goes_down_and_held_out_output_mse_improves() {
    let (head, tail, before, after) = held_out_run(&teacher(), 24, STEPS);
    assert!(tail < head, "loss did not go down: {head} -> {tail}");
    assert!(after < before, "held-out output MSE {before} -> {after}");
}

/// The issue's bar, on a teacher that predicts noise (see `trained_teacher`): held-out
/// output MSE at most half the freshly pruned student's after a fixed number of steps.
/// (On the random-weight teacher it plateaus near 0.7x: docs/distill.md.)
#[test]
fn held_out_output_mse_at_least_halves_against_a_trained_teacher() {
    let tmp = trained_teacher(HALVING_TEACHER_STEPS);
    let (_, _, before, after) = held_out_run(&tmp, 264, HALVING_STEPS);
    println!("held-out output MSE ratio {:.3}", after / before);
    assert!(after <= 0.5 * before, "output MSE {before} -> {after}");
}

const HALVING_TEACHER_STEPS: u64 = 80;
const HALVING_STEPS: u64 = 60;

#[test]
fn feature_loss_is_no_worse_than_output_loss_alone() {
    let tmp = teacher();
    let (held, data) = dataset(24, 2).split(8).unwrap();
    let mut with = trainer(&tmp.path().join("t"), distill_only(), STEPS);
    let without_cfg = LossConfig {
        lambda_feat: 0.0,
        ..distill_only()
    };
    let mut without = trainer(&tmp.path().join("t"), without_cfg, STEPS);
    train(&mut with, &data);
    train(&mut without, &data);
    let (a, b) = (
        with.evaluate(&held).unwrap(),
        without.evaluate(&held).unwrap(),
    );
    println!(
        "held-out output MSE after {STEPS} steps: with feature loss {:.5}, output loss only {:.5}",
        a.output_mse, b.output_mse
    );
    assert!(
        a.output_mse <= b.output_mse,
        "{} > {}",
        a.output_mse,
        b.output_mse
    );
}

#[test]
fn resume_gives_the_same_weights_as_an_uninterrupted_run() {
    let tmp = teacher();
    let data = dataset(8, 3);
    let ema_cfg = LossConfig {
        lambda_out: 0.7,
        ..Default::default()
    };
    let mut straight = trainer(&tmp.path().join("t"), ema_cfg, 6);
    straight.cfg.ema_decay = Some(0.9);
    straight.cfg.grad_accum = 2;
    train(&mut straight, &data);

    let ck = tmp.path().join("ck");
    let mut first = trainer(&tmp.path().join("t"), ema_cfg, 3);
    first.cfg.ema_decay = Some(0.9);
    first.cfg.grad_accum = 2;
    train(&mut first, &data);
    first.save_checkpoint(&ck).unwrap();
    drop(first);
    let mut resumed = trainer(&tmp.path().join("t"), ema_cfg, 3);
    resumed.cfg.ema_decay = Some(0.9);
    resumed.cfg.grad_accum = 2;
    resumed.load_checkpoint(&ck).unwrap();
    assert_eq!(resumed.step, 3);
    train(&mut resumed, &data);

    let (a, b) = (
        straight.export_weights().unwrap(),
        resumed.export_weights().unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (k, v) in &a {
        let d = max_abs_diff(v, &b[k]);
        assert_eq!(d, 0.0, "{k} differs by {d}");
    }
    // And training did move the weights (the comparison is not vacuous).
    let fresh = trainer(&tmp.path().join("t"), ema_cfg, 0)
        .export_weights()
        .unwrap();
    let moved = a.iter().any(|(k, v)| max_abs_diff(v, &fresh[k]) > 0.0);
    assert!(moved);
}
