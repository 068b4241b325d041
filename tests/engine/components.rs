//! Tokenizers, text encoders, VAE and scheduler schedules against transformers/diffusers
//! on the committed fixtures (tools/engine_fixtures.py).

use crate::support::{fixture, rel_l2};

use arenaxl::engine::config::SchedulerConfig;
use arenaxl::engine::scheduler::{Scheduler, SchedulerKind};
use arenaxl::engine::text::TextEncoders;
use arenaxl::engine::tokenizer::ClipTokenizer;
use arenaxl::engine::vae::Vae;
use candle_core::{DType, Device, Tensor};

const PROMPTS: [&str; 2] = [
    "a photo of a cat",
    "an astronaut riding a horse on the moon, painting",
];

#[test]
fn tokenizers_match_transformers() {
    let dir = fixture("tiny-sdxl");
    let r =
        candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
    for sub in ["tokenizer", "tokenizer_2"] {
        let tok = ClipTokenizer::load(&dir.join(sub)).unwrap();
        let expected = r[&format!("{sub}.input_ids")].to_vec2::<i64>().unwrap();
        let prompts: Vec<String> = serde_json::from_str(
            &std::fs::read_to_string(fixture("tokenizer_prompts.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(prompts.len(), expected.len());
        for (prompt, want) in prompts.iter().zip(expected) {
            let got: Vec<i64> = tok
                .encode_padded(prompt, None)
                .unwrap()
                .into_iter()
                .map(i64::from)
                .collect();
            assert_eq!(got, want, "{sub}: `{prompt}`");
        }
    }
    // The second SDXL tokenizer pads with `!`, the first with end-of-text.
    let t1 = ClipTokenizer::load(&dir.join("tokenizer")).unwrap();
    let t2 = ClipTokenizer::load(&dir.join("tokenizer_2")).unwrap();
    assert_eq!(t1.pad_id, t1.eos_id);
    assert_ne!(t2.pad_id, t2.eos_id);
}

#[test]
fn text_encoders_match_transformers() {
    for name in ["tiny-sdxl", "tiny-vega"] {
        let dir = fixture(name);
        let dev = Device::Cpu;
        let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &dev).unwrap();
        let enc = TextEncoders::load(&dir, DType::F32, &dev).unwrap();
        let prompts: Vec<String> = PROMPTS.iter().map(|s| s.to_string()).collect();
        let out = enc.encode(&prompts, None, &dev).unwrap();
        let e = rel_l2(&out.embeds, &r["text.prompt_embeds"]);
        let p = rel_l2(&out.pooled, &r["text.pooled"]);
        assert!(e < 1e-5 && p < 1e-5, "{name}: embeds {e}, pooled {p}");
        let neg = enc
            .encode(
                &["blurry".to_string(), "blurry".to_string()],
                Some(77),
                &dev,
            )
            .unwrap();
        assert!(rel_l2(&neg.embeds, &r["text.negative_embeds"]) < 1e-5);
        assert!(rel_l2(&neg.pooled, &r["text.negative_pooled"]) < 1e-5);
    }
}

#[test]
fn vae_decoder_matches_diffusers() {
    for name in ["tiny-sdxl", "tiny-ssd-1b"] {
        let dir = fixture(name);
        let dev = Device::Cpu;
        let r = candle_core::safetensors::load(dir.join("reference.safetensors"), &dev).unwrap();
        let vae = Vae::load(&dir.join("vae"), DType::F32, &dev).unwrap();
        let img = vae.decode_raw(&r["vae.latents"]).unwrap();
        let err = rel_l2(&img, &r["vae.image"]);
        assert!(err < 1e-4, "{name}: VAE decode relative L2 error {err}");
    }
}

#[derive(serde::Deserialize)]
struct Row {
    scheduler: String,
    spacing: String,
    steps: usize,
    timesteps: Vec<f64>,
    init_noise_sigma: f64,
    sigmas: Option<Vec<f64>>,
}

#[test]
fn scheduler_timesteps_match_diffusers() {
    let base: SchedulerConfig =
        arenaxl::engine::config::read_json(&fixture("tiny-sdxl/scheduler/scheduler_config.json"))
            .unwrap();
    let text = std::fs::read_to_string(fixture("schedulers.json")).unwrap();
    let rows: Vec<Row> = serde_json::from_str(&text).unwrap();
    assert!(rows.len() >= 40);
    for row in rows {
        let kind: SchedulerKind = row.scheduler.parse().unwrap();
        let cfg = SchedulerConfig {
            timestep_spacing: Some(row.spacing.clone()),
            ..base.clone()
        };
        let s = kind.build(&cfg, row.steps, 0).unwrap();
        let what = format!("{} {} {}", row.scheduler, row.spacing, row.steps);
        assert_eq!(s.timesteps().len(), row.timesteps.len(), "{what}");
        for (a, b) in s.timesteps().iter().zip(&row.timesteps) {
            assert!(
                (a - b).abs() < 1e-3,
                "{what}: timesteps {:?} vs {:?}",
                s.timesteps(),
                row.timesteps
            );
        }
        assert!(
            (s.init_noise_sigma() - row.init_noise_sigma).abs() < 1e-4 * row.init_noise_sigma,
            "{what}: init_noise_sigma {} vs {}",
            s.init_noise_sigma(),
            row.init_noise_sigma
        );
        if let (Some(sig), SchedulerKind::Euler) = (&row.sigmas, kind) {
            let e = arenaxl::engine::scheduler::euler::Euler::new(&cfg, row.steps).unwrap();
            for (a, b) in e.sigmas().iter().zip(sig) {
                assert!((a - b).abs() < 1e-5 * b.max(1.0), "{what}: sigmas");
            }
        }
        if let (Some(sig), SchedulerKind::DpmPp2m) = (&row.sigmas, kind) {
            let e = arenaxl::engine::scheduler::dpm_solver::DpmSolverPp2m::new(&cfg, row.steps)
                .unwrap();
            for (a, b) in e.sigmas().iter().zip(sig) {
                assert!((a - b).abs() < 1e-5 * b.max(1.0), "{what}: sigmas");
            }
        }
    }
}

#[test]
fn scheduler_names_parse() {
    for (s, k) in [
        ("euler", SchedulerKind::Euler),
        ("ddim", SchedulerKind::Ddim),
        ("dpmpp-2m", SchedulerKind::DpmPp2m),
        ("euler-a", SchedulerKind::EulerAncestral),
    ] {
        assert_eq!(s.parse::<SchedulerKind>().unwrap(), k);
        assert_eq!(k.name(), s);
    }
    assert!("lms".parse::<SchedulerKind>().is_err());
    let _unused: Option<&dyn Scheduler> = None;
}

#[test]
fn vae_decodes_batch_items_independently() {
    let dev = Device::Cpu;
    let vae = Vae::load(&fixture("tiny-sdxl").join("vae"), DType::F32, &dev).unwrap();
    let z = Tensor::randn(0f32, 1f32, (2, 4, 8, 12), &dev).unwrap();
    let both = vae.decode_raw(&z).unwrap();
    let one = vae.decode_raw(&z.narrow(0, 1, 1).unwrap()).unwrap();
    assert!(rel_l2(&both.narrow(0, 1, 1).unwrap(), &one) < 1e-6);
}

#[test]
fn unsupported_scheduler_options_are_refused_by_name() {
    let base: SchedulerConfig =
        arenaxl::engine::config::read_json(&fixture("tiny-sdxl/scheduler/scheduler_config.json"))
            .unwrap();
    let cases: [(SchedulerConfig, SchedulerKind, &str); 6] = [
        (
            SchedulerConfig {
                use_exponential_sigmas: Some(true),
                ..base.clone()
            },
            SchedulerKind::Euler,
            "use_exponential_sigmas",
        ),
        (
            SchedulerConfig {
                use_flow_sigmas: Some(true),
                ..base.clone()
            },
            SchedulerKind::DpmPp2m,
            "use_flow_sigmas",
        ),
        (
            SchedulerConfig {
                timestep_spacing: Some("sideways".into()),
                ..base.clone()
            },
            SchedulerKind::Ddim,
            "timestep_spacing",
        ),
        (
            SchedulerConfig {
                prediction_type: Some("sample".into()),
                ..base.clone()
            },
            SchedulerKind::EulerAncestral,
            "prediction_type",
        ),
        (
            SchedulerConfig {
                solver_order: Some(3),
                ..base.clone()
            },
            SchedulerKind::DpmPp2m,
            "solver_order",
        ),
        (
            SchedulerConfig {
                final_sigmas_type: Some("sigma_max".into()),
                ..base.clone()
            },
            SchedulerKind::Euler,
            "final_sigmas_type",
        ),
    ];
    for (cfg, kind, field) in cases {
        let err = kind.build(&cfg, 4, 0).err().unwrap().to_string();
        assert!(
            err.contains("scheduler_config.json") && err.contains(field),
            "{err}"
        );
    }
    assert!(SchedulerKind::Euler.build(&base, 0, 0).is_err());
}
