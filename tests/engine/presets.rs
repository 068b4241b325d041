//! Presets: published parameter counts, agreement with the diffusers fixtures, and
//! random-weight model folders that the pipeline loads and runs.

use crate::support::fixture;

use arenaxl::engine::config::{read_json, UNetConfig};
use arenaxl::engine::presets::{component_info, init_model_folder, ModelConfigs};
use arenaxl::engine::{GenerateRequest, Pipeline};
use candle_core::{DType, Device};

fn params(preset: &str) -> Vec<(String, u64)> {
    let c = ModelConfigs::preset(preset).unwrap();
    component_info(&c)
        .unwrap()
        .into_iter()
        .map(|i| (i.name.to_string(), i.parameters))
        .collect()
}

#[test]
fn full_presets_have_published_parameter_counts() {
    for (preset, unet) in [
        ("sdxl", 2_567_463_684u64),
        ("ssd-1b", 1_331_334_404),
        ("vega", 745_225_604),
    ] {
        let p = params(preset);
        assert_eq!(p[0], ("unet".to_string(), unet), "{preset}");
        assert_eq!(p[1], ("vae".to_string(), 83_653_863), "{preset}");
        assert_eq!(p[2], ("text_encoder".to_string(), 123_060_480), "{preset}");
        assert_eq!(
            p[3],
            ("text_encoder_2".to_string(), 694_659_840),
            "{preset}"
        );
    }
}

#[test]
fn tiny_presets_are_the_fixture_models() {
    for name in ["tiny-sdxl", "tiny-ssd-1b", "tiny-vega"] {
        let preset = ModelConfigs::preset(name).unwrap();
        let from_fixture: UNetConfig = read_json(&fixture(name).join("unet/config.json")).unwrap();
        assert_eq!(preset.unet, from_fixture, "{name}");
        assert_eq!(params(name), {
            let c = ModelConfigs::folder(&fixture(name)).unwrap();
            component_info(&c)
                .unwrap()
                .into_iter()
                .map(|i| (i.name.to_string(), i.parameters))
                .collect::<Vec<_>>()
        });
    }
}

#[test]
fn unknown_preset_is_an_error() {
    assert!(ModelConfigs::preset("sd15").is_err());
    let tmp = tempfile::tempdir().unwrap();
    assert!(init_model_folder("sd15", tmp.path(), 0).is_err());
}

#[test]
fn init_writes_a_loadable_pipeline() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("m");
    init_model_folder("tiny-ssd-1b", &dir, 7).unwrap();
    let unet_weights = candle_core::safetensors::load(
        dir.join("unet/diffusion_pytorch_model.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let stored: u64 = unet_weights.values().map(|t| t.elem_count() as u64).sum();
    assert_eq!(stored, params("tiny-ssd-1b")[0].1);

    let mut pipe = Pipeline::load(&dir, &Device::Cpu, DType::F32).unwrap();
    let req = GenerateRequest {
        prompts: vec!["a photo of a cat".into()],
        steps: 2,
        guidance: 5.0,
        seed: 3,
        width: 128,
        height: 128,
        ..Default::default()
    };
    let images = pipe.generate(&req, &mut |_, _| {}).unwrap();
    assert_eq!((images[0].width(), images[0].height()), (128, 128));

    // Same seed, same folder.
    let dir2 = tmp.path().join("m2");
    init_model_folder("tiny-ssd-1b", &dir2, 7).unwrap();
    let a = std::fs::read(dir.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    let b = std::fs::read(dir2.join("unet/diffusion_pytorch_model.safetensors")).unwrap();
    assert_eq!(a, b);
}
