//! Half-precision distillation on the CPU: forward and backward in f16 with dynamic loss
//! scaling, f32 master weights and AdamW state. The loss falls as in f32, a learning rate
//! of 1e-5 moves the f32 weights, checkpoints hold the master weights, and resume is
//! bit-identical. (bf16 takes the same path minus the loss scaling; candle's CPU matmul has
//! no bf16 kernel, so it is exercised on a GPU only: tools/gpu-check.sh.)

use crate::support::max_abs_diff;

use std::collections::HashMap;
use std::path::Path;

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

fn teacher() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    init_model_folder("tiny-sdxl", &tmp.path().join("t"), 5).unwrap();
    tmp
}

/// A Vega-plan student of the tiny teacher, trained in `dtype` (teacher too).
fn trainer(teacher_dir: &Path, dtype: DType, lr: f64, steps: u64) -> Trainer {
    let cfg_file = teacher_dir.join("unet/config.json");
    let cfg: UNetConfig = read_json(&cfg_file).unwrap();
    let student = Plan::builtin("vega")
        .unwrap()
        .student("vega", &cfg, &cfg_file, Keep::First)
        .unwrap();
    let weights = initial_weights(&teacher_dir.join("unet"), &student).unwrap();
    let teacher = UNet2DConditionModel::load(
        &teacher_dir.join("unet"),
        dtype,
        &Device::Cpu,
        Kernels { fused: true },
    )
    .unwrap();
    let cfg = TrainConfig {
        steps,
        batch_size: 4,
        adamw: AdamWConfig {
            lr,
            weight_decay: 0.0,
            ..Default::default()
        },
        warmup_steps: 0,
        max_grad_norm: 1.0,
        loss: LossConfig {
            lambda_task: 0.0,
            lambda_feat: 0.5,
            ..Default::default()
        },
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
        dtype,
    )
    .unwrap()
}

fn train(t: &mut Trainer, data: &Dataset) -> Vec<f32> {
    (0..t.cfg.steps)
        .map(|_| {
            let log = t.train_step(data).unwrap();
            assert!(log.loss.is_finite(), "step {}: loss {}", log.step, log.loss);
            log.loss
        })
        .collect()
}

fn mean(v: &[f32]) -> f32 {
    v.iter().sum::<f32>() / v.len() as f32
}

const STEPS: u64 = 24;
/// The f16 run's mean loss over the last 5 steps within this fraction of the f32 run's.
const TOLERANCE: f32 = 0.01;

/// `trainer` in f16 with the loss scale starting at `scale` instead of 2^16.
fn f16_trainer(teacher_dir: &Path, lr: f64, steps: u64, scale: f64) -> Trainer {
    let mut t = trainer(teacher_dir, DType::F16, lr, steps);
    t.scaler.as_mut().unwrap().scale = scale;
    t
}

#[test]
fn f16_loss_falls_like_f32() {
    let tmp = teacher();
    let data = dataset(16, 1);
    let f32_losses = train(
        &mut trainer(&tmp.path().join("t"), DType::F32, 3e-4, STEPS),
        &data,
    );
    let (head32, tail32) = (mean(&f32_losses[..5]), mean(&f32_losses[19..]));
    assert!(tail32 < 0.9 * head32, "f32: {head32} -> {tail32}");

    // From PyTorch's initial scale 2^16: this loss (~70) times 2^16 overflows f16, so the
    // first steps are skipped while the scale backs off; nothing non-finite gets into the
    // weights and the loss still falls.
    let mut t = trainer(&tmp.path().join("t"), DType::F16, 3e-4, STEPS);
    let logs: Vec<_> = (0..STEPS).map(|_| t.train_step(&data).unwrap()).collect();
    let skipped = logs.iter().filter(|l| l.skipped).count();
    let settled = t.scaler.unwrap().scale;
    let losses: Vec<f32> = logs.iter().map(|l| l.loss).collect();
    println!(
        "f16 from scale 65536: {skipped} of {STEPS} steps skipped, scale settled at {settled}; loss first 5 {:.3} last 5 {:.3}",
        mean(&losses[..5]),
        mean(&losses[19..])
    );
    assert!(skipped > 0 && skipped < 10 && settled < 65536.0);
    assert!(logs[skipped..].iter().all(|l| !l.skipped));
    assert!(mean(&losses[19..]) < 0.9 * mean(&losses[..5]));
    for (k, w) in t.student.weights().unwrap() {
        let s = w
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(s.is_finite(), "{k}");
    }

    // Started at the scale it settled at, every step applies and the curve follows f32's.
    let mut t = f16_trainer(&tmp.path().join("t"), 3e-4, STEPS, settled);
    let losses = train(&mut t, &data);
    let (head, tail) = (mean(&losses[..5]), mean(&losses[19..]));
    println!("f16: loss first 5 {head:.4} last 5 {tail:.4}; f32: {head32:.4} -> {tail32:.4}");
    let rel = (tail - tail32).abs() / tail32;
    assert!(
        rel <= TOLERANCE,
        "f16 final loss {tail} vs f32 {tail32} ({:.1}% apart)",
        100.0 * rel
    );
}

/// Fraction of elements that differ between two sets of weights.
fn changed(a: &HashMap<String, Tensor>, b: &HashMap<String, Tensor>) -> f64 {
    let (mut n, mut d) = (0usize, 0usize);
    for (k, x) in a {
        let x = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let y = b[k].flatten_all().unwrap().to_vec1::<f32>().unwrap();
        n += x.len();
        d += x.iter().zip(&y).filter(|(p, q)| p != q).count();
    }
    d as f64 / n as f64
}

#[test]
fn an_update_at_lr_1e_5_moves_the_f32_master_weights() {
    let tmp = teacher();
    let data = dataset(8, 2);
    {
        let dtype = DType::F16;
        let mut t = f16_trainer(&tmp.path().join("t"), 1e-5, 1, 1024.0);
        let before = t.student.weights().unwrap();
        let working_before = working_copy(&t);
        let log = t.train_step(&data).unwrap();
        assert!(!log.skipped, "{dtype:?}: the step was skipped");
        let after = t.student.weights().unwrap();
        assert_eq!(after.values().next().unwrap().dtype(), DType::F32);
        let master = changed(&before, &after);
        let working = changed(&working_before, &working_copy(&t));
        println!(
            "{dtype:?}, lr 1e-5, one step: {:.1}% of f32 master weights changed, {:.1}% of the \
             {dtype:?} working copy",
            100.0 * master,
            100.0 * working
        );
        // Nearly every weight gets a gradient; AdamW's first step moves each by ~lr.
        assert!(
            master > 0.9,
            "{dtype:?}: only {master} of the weights moved"
        );
        // Most such updates are below half precision's resolution: kept there alone,
        // they would have been lost.
        assert!(working < master, "{dtype:?}: {working} vs {master}");
    }
}

/// The half-precision vars, in f32.
fn working_copy(t: &Trainer) -> HashMap<String, Tensor> {
    t.student
        .vars
        .iter()
        .map(|(n, v)| (n.clone(), v.as_tensor().to_dtype(DType::F32).unwrap()))
        .collect()
}

#[test]
fn f16_checkpoint_holds_master_weights_and_resumes_bit_identically() {
    let tmp = teacher();
    let t_dir = tmp.path().join("t");
    let data = dataset(8, 3);
    // Started at 4096, the first step overflows and is skipped (scale 2048), so the
    // scaler's state is part of what must resume exactly.
    let mut straight = f16_trainer(&t_dir, 1e-4, 4, 4096.0);
    straight.cfg.ema_decay = Some(0.9);
    train(&mut straight, &data);

    let ck = tmp.path().join("ck");
    let mut first = f16_trainer(&t_dir, 1e-4, 2, 4096.0);
    first.cfg.ema_decay = Some(0.9);
    train(&mut first, &data);
    first.save_checkpoint(&ck).unwrap();

    // The checkpoint's weights are the f32 masters, not the f16 working copy.
    let saved =
        candle_core::safetensors::load(ck.join("student.safetensors"), &Device::Cpu).unwrap();
    let master = first.student.master.as_ref().unwrap();
    let mut off_f16_grid = 0usize;
    for (k, m) in master {
        assert_eq!(saved[k].dtype(), DType::F32, "{k}");
        assert_eq!(max_abs_diff(&saved[k], m), 0.0, "{k}");
        let rounded = m
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        if max_abs_diff(&rounded, m) > 0.0 {
            off_f16_grid += 1;
        }
    }
    assert!(off_f16_grid > master.len() / 2, "{off_f16_grid}");
    let scaler = first.scaler;
    drop(first);

    let mut resumed = f16_trainer(&t_dir, 1e-4, 2, 4096.0);
    resumed.cfg.ema_decay = Some(0.9);
    resumed.load_checkpoint(&ck).unwrap();
    assert_eq!(resumed.step, 2);
    assert_eq!(resumed.scaler, scaler);
    train(&mut resumed, &data);

    let (a, b) = (
        straight.student.weights().unwrap(),
        resumed.student.weights().unwrap(),
    );
    for (k, v) in &a {
        assert_eq!(max_abs_diff(v, &b[k]), 0.0, "{k}");
    }
    let (ea, eb) = (
        straight.export_weights().unwrap(),
        resumed.export_weights().unwrap(),
    );
    for (k, v) in &ea {
        assert_eq!(max_abs_diff(v, &eb[k]), 0.0, "ema {k}");
    }
    assert_eq!(straight.scaler, resumed.scaler);
    let fresh = trainer(&t_dir, DType::F16, 1e-4, 0)
        .student
        .weights()
        .unwrap();
    assert!(changed(&fresh, &a) > 0.5);
}
