//! The UNet against diffusers on the committed tiny fixtures (tools/engine_fixtures.py).

use crate::support::{fixture, rel_l2};

use arenaxl::engine::nn::Kernels;
use arenaxl::engine::unet::{AddedCond, UNet2DConditionModel};
use candle_core::{DType, Device};

fn check(name: &str) {
    let dev = Device::Cpu;
    let dir = fixture(name);
    let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &dev).unwrap();
    let unet = UNet2DConditionModel::load(&dir.join("unet"), DType::F32, &dev, Kernels::default())
        .unwrap();
    let added = AddedCond {
        text_embeds: r["unet.text_embeds"].clone(),
        time_ids: r["unet.time_ids"].clone(),
    };
    let out = unet
        .forward_with_features(
            &r["unet.sample"],
            &r["unet.timesteps"],
            &r["unet.encoder_hidden_states"],
            Some(&added),
        )
        .unwrap();
    let err = rel_l2(&out.sample, &r["unet.out"]);
    assert!(err < 1e-4, "{name}: UNet output relative L2 error {err}");
    let expected: Vec<&String> = r.keys().filter(|k| k.starts_with("feature.")).collect();
    assert_eq!(out.features.len(), expected.len(), "{name}: feature count");
    for (key, t) in &out.features {
        let reference = &r[&format!("feature.{key}")];
        let err = rel_l2(t, reference);
        assert!(err < 1e-4, "{name}: feature {key} relative L2 error {err}");
    }
    // The fused kernels give the same numbers (they only lack gradients).
    let fused =
        UNet2DConditionModel::load(&dir.join("unet"), DType::F32, &dev, Kernels { fused: true })
            .unwrap();
    let y = fused
        .forward(
            &r["unet.sample"],
            &r["unet.timesteps"],
            &r["unet.encoder_hidden_states"],
            Some(&added),
        )
        .unwrap();
    assert!(rel_l2(&y, &r["unet.out"]) < 1e-4);
}

#[test]
fn tiny_sdxl_unet_matches_diffusers() {
    check("tiny-sdxl");
}

#[test]
fn tiny_ssd_1b_unet_matches_diffusers() {
    check("tiny-ssd-1b");
}

#[test]
fn tiny_vega_unet_matches_diffusers() {
    check("tiny-vega");
}

#[test]
fn unet_is_differentiable() {
    let dev = Device::Cpu;
    let dir = fixture("tiny-vega");
    let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &dev).unwrap();
    let unet = UNet2DConditionModel::load(&dir.join("unet"), DType::F32, &dev, Kernels::default())
        .unwrap();
    let x = candle_core::Var::from_tensor(&r["unet.sample"]).unwrap();
    let added = AddedCond {
        text_embeds: r["unet.text_embeds"].clone(),
        time_ids: r["unet.time_ids"].clone(),
    };
    let y = unet
        .forward(
            x.as_tensor(),
            &r["unet.timesteps"],
            &r["unet.encoder_hidden_states"],
            Some(&added),
        )
        .unwrap();
    let grads = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads
        .get(x.as_tensor())
        .expect("gradient reaches the input");
    let norm = g
        .sqr()
        .unwrap()
        .sum_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert!(norm.is_finite() && norm > 0.0);
}

#[test]
fn every_unet_parameter_receives_a_gradient() {
    // What distillation needs: a trainable UNet over a VarMap, with a loss on its features.
    let dev = Device::Cpu;
    let dir = fixture("tiny-ssd-1b");
    let cfg_file = dir.join("unet/config.json");
    let config: arenaxl::engine::config::UNetConfig =
        arenaxl::engine::config::read_json(&cfg_file).unwrap();
    let varmap = candle_nn::VarMap::new();
    let vb = candle_nn::VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let unet = UNet2DConditionModel::new(&config, &cfg_file, Kernels::default(), vb).unwrap();
    let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &dev).unwrap();
    let added = AddedCond {
        text_embeds: r["unet.text_embeds"].clone(),
        time_ids: r["unet.time_ids"].clone(),
    };
    let out = unet
        .forward_with_features(
            &r["unet.sample"],
            &r["unet.timesteps"],
            &r["unet.encoder_hidden_states"],
            Some(&added),
        )
        .unwrap();
    let mut loss = out.sample.sqr().unwrap().mean_all().unwrap();
    for (_, f) in &out.features {
        loss = (loss + f.sqr().unwrap().mean_all().unwrap()).unwrap();
    }
    let grads = loss.backward().unwrap();
    let vars = varmap.all_vars();
    assert!(vars.len() > 100);
    for v in &vars {
        assert!(
            grads.get(v.as_tensor()).is_some(),
            "a parameter of shape {:?} gets no gradient",
            v.shape()
        );
    }
}
