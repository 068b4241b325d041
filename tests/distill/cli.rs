//! `distill train` end to end on a tiny teacher and a generated imagefolder: the JSONL
//! log, evaluation, checkpoints, resume, stages, and an exported student that the engine
//! loads and generates with.

use crate::support::max_abs_diff;

use std::path::Path;
use std::process::Command;

use arenaxl::engine::presets::init_model_folder;

fn imagefolder(dir: &Path, n: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let mut meta = String::new();
    for i in 0..n {
        // Gradients of different colours and sizes (one not square, to exercise the crop).
        let (w, h) = if i % 2 == 0 { (48, 40) } else { (40, 40) };
        let img = image::RgbImage::from_fn(w, h, |x, y| {
            image::Rgb([(x * 5 + i as u32 * 40) as u8, (y * 6) as u8, (i * 60) as u8])
        });
        img.save(dir.join(format!("{i}.png"))).unwrap();
        let text = [
            "a photo of a cat",
            "a red dog",
            "city at night",
            "blue horse",
        ][i % 4];
        meta.push_str(&format!(
            "{{\"file_name\": \"{i}.png\", \"text\": \"{text}\"}}\n"
        ));
    }
    std::fs::write(dir.join("metadata.jsonl"), meta).unwrap();
}

fn arenaxl(args: &[&str], paths: &[(&str, &Path)]) -> String {
    let mut c = Command::new(env!("CARGO_BIN_EXE_arenaxl"));
    c.args(args);
    for (flag, p) in paths {
        c.arg(flag).arg(p);
    }
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn log_lines(file: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(file)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

const TRAIN: &[&str] = &[
    "distill",
    "train",
    "--plan",
    "vega",
    "--resolution",
    "64",
    "--batch-size",
    "2",
    "--lr",
    "1e-4",
    "--held-out",
    "2",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--quiet",
];

#[test]
fn train_logs_checkpoints_resumes_and_exports_a_loadable_student() {
    let tmp = tempfile::tempdir().unwrap();
    let (teacher, data, out) = (
        tmp.path().join("t"),
        tmp.path().join("d"),
        tmp.path().join("o"),
    );
    init_model_folder("tiny-sdxl", &teacher, 1).unwrap();
    imagefolder(&data, 6);
    let paths = [
        ("--teacher", teacher.as_path()),
        ("--data", data.as_path()),
        ("--out", out.as_path()),
    ];
    let mut args = TRAIN.to_vec();
    args.extend(["--steps", "3"]);
    let stdout = arenaxl(&args, &paths);
    assert!(stdout.contains("held-out: output MSE"), "{stdout}");
    assert!(out.join("cache/latents-64.safetensors").is_file());
    let log = log_lines(&out.join("stage-0/train.jsonl"));
    let steps: Vec<u64> = log.iter().filter_map(|v| v["step"].as_u64()).collect();
    assert_eq!(steps, vec![1, 2, 3]);
    for k in ["loss", "task", "output", "features", "grad_norm", "lr"] {
        assert!(log[0][k].is_number(), "log lacks {k}: {}", log[0]);
    }
    assert!(log.iter().any(|v| v["eval"]["output_mse"].is_number()));

    // Resume to 5 steps: the log continues at 4.
    let mut args = TRAIN.to_vec();
    args.extend(["--steps", "5", "--resume"]);
    // The finished model would make the stage count as done; remove it to continue.
    std::fs::remove_dir_all(out.join("stage-0/model")).unwrap();
    arenaxl(&args, &paths);
    let steps: Vec<u64> = log_lines(&out.join("stage-0/train.jsonl"))
        .iter()
        .filter_map(|v| v["step"].as_u64())
        .collect();
    assert_eq!(steps, vec![1, 2, 3, 4, 5]);

    // The exported student generates.
    let model = out.join("stage-0/model");
    let img = tmp.path().join("img.png");
    arenaxl(
        &[
            "generate",
            "--prompt",
            "a red dog",
            "--steps",
            "2",
            "--width",
            "64",
            "--height",
            "64",
        ],
        &[("--model", model.as_path()), ("--out", img.as_path())],
    );
    assert!(image::open(&img).is_ok());
}

#[test]
fn stages_chain_students_and_reject_bad_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (teacher, data, out) = (
        tmp.path().join("t"),
        tmp.path().join("d"),
        tmp.path().join("o"),
    );
    init_model_folder("tiny-sdxl", &teacher, 1).unwrap();
    imagefolder(&data, 4);
    let ssd = tmp.path().join("tiny-ssd-1b.json");
    std::fs::write(
        &ssd,
        r#"{"down": [null, [2, 1], [3, 2]], "up": [[2, 2, 3], [2, 1, 1], null], "mid": "resnet"}"#,
    )
    .unwrap();
    let stages = tmp.path().join("stages.json");
    std::fs::write(
        &stages,
        format!(r#"{{"teacher": "original", "stages": [{{"plan": "{}", "steps": 2}}, {{"plan": "vega", "steps": 2}}]}}"#, ssd.display()),
    )
    .unwrap();
    let paths = [
        ("--teacher", teacher.as_path()),
        ("--data", data.as_path()),
        ("--out", out.as_path()),
        ("--stages", stages.as_path()),
    ];
    let stdout = arenaxl(
        &[
            "distill",
            "train",
            "--resolution",
            "64",
            "--held-out",
            "1",
            "--quiet",
        ],
        &paths,
    );
    assert!(stdout.contains("stage-1"), "{stdout}");
    let cfg: arenaxl::engine::config::UNetConfig =
        arenaxl::engine::config::read_json(&out.join("stage-1/model/unet/config.json")).unwrap();
    let vega: arenaxl::engine::config::UNetConfig = serde_json::from_str(
        arenaxl::engine::presets::preset_files("tiny-vega")
            .unwrap()
            .unet,
    )
    .unwrap();
    let l = |c: &arenaxl::engine::config::UNetConfig| {
        arenaxl::engine::unet::layout::UNetLayout::resolve(c, Path::new("x")).unwrap()
    };
    assert_eq!(l(&cfg), l(&vega));

    std::fs::write(
        data.join("metadata.jsonl"),
        "{\"file_name\": \"missing.png\", \"text\": \"x\"}\n",
    )
    .unwrap();
    let bad = Command::new(env!("CARGO_BIN_EXE_arenaxl"))
        .args(["distill", "train", "--plan", "vega", "--quiet", "--teacher"])
        .arg(&teacher)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(tmp.path().join("o2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("metadata.jsonl") && err.contains("line 1"),
        "{err}"
    );
}

/// The dataset cache is a function of the folder: encoding it twice gives the same latents
/// (the VAE posterior is sampled from a seeded generator, not candle's unseeded one), and
/// they are a sample, not the mean: close to it, but not equal.
#[test]
fn encoding_a_folder_twice_gives_the_same_latents() {
    use arenaxl::distill::data::{cached, load_image, load_vae};
    use candle_core::Device;
    let tmp = tempfile::tempdir().unwrap();
    let (teacher, data) = (tmp.path().join("t"), tmp.path().join("d"));
    init_model_folder("tiny-sdxl", &teacher, 4).unwrap();
    imagefolder(&data, 3);
    let a = cached(
        &teacher,
        &data,
        64,
        &tmp.path().join("c1"),
        &Device::Cpu,
        |_| true,
    )
    .unwrap();
    let b = cached(
        &teacher,
        &data,
        64,
        &tmp.path().join("c2"),
        &Device::Cpu,
        |_| true,
    )
    .unwrap();
    assert_eq!(max_abs_diff(&a.latents, &b.latents), 0.0);
    assert_eq!(max_abs_diff(&a.embeds, &b.embeds), 0.0);

    let vae = load_vae(&teacher, &Device::Cpu).unwrap();
    let x = load_image(&data.join("0.png"), 64)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let mut r1 = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let mut r2 = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2);
    let (s1, s2) = (
        vae.sample(&x, &mut r1).unwrap(),
        vae.sample(&x, &mut r2).unwrap(),
    );
    let spread = max_abs_diff(&s1, &s2);
    assert!(spread > 0.0, "different seeds draw different samples");
    let mut r1 = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    assert_eq!(max_abs_diff(&s1, &vae.sample(&x, &mut r1).unwrap()), 0.0);
}
