//! The CPU dry run of tools/gpu-check.sh (the GPU machine's one script): tiny presets,
//! `--device cpu`, the binary this build made. The script must run start to end and print
//! its whole table; the PyTorch comparison is skipped where torch + diffusers are absent.

use std::process::Command;

#[test]
fn gpu_check_script_dry_run_on_cpu_prints_the_whole_table() {
    let root = env!("CARGO_MANIFEST_DIR");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("check");
    let run = Command::new("bash")
        .arg(format!("{root}/tools/gpu-check.sh"))
        .args(["--bin", env!("CARGO_BIN_EXE_arenaxl")])
        .args(["--device", "cpu", "--presets", "tiny"])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    println!("{stdout}");
    let table = std::fs::read_to_string(out.join("table.md")).unwrap();
    assert_eq!(table, stdout);
    let rows: Vec<&str> = table.lines().filter(|l| l.starts_with("| ")).collect();
    let with = |what: &str| rows.iter().filter(|r| r.contains(what)).count();
    // 3 models x 2 dtypes of UNet timings, each a positive number of milliseconds.
    let unet: Vec<&&str> = rows
        .iter()
        .filter(|r| r.starts_with("| UNet call, batch 2"))
        .collect();
    assert_eq!(unet.len(), 6, "{table}");
    for r in unet {
        let ms: f64 = r
            .split('|')
            .nth(4)
            .and_then(|c| c.trim().strip_suffix(" ms"))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no time in `{r}`"));
        assert!(ms > 0.0, "{r}");
    }
    assert_eq!(with("speed-up over tiny-sdxl"), 2, "{table}");
    assert_eq!(with("-step generation"), 3, "{table}");
    assert_eq!(with("| finite (PNG"), 3, "images: {table}");
    assert_eq!(with("distillation step tiny-sdxl -> vega"), 2, "{table}");
    // One row per model with torch + diffusers, one "skipped" row without.
    let torch = with("PyTorch diffusers");
    let skipped = with("skipped: torch + diffusers not importable");
    assert!(
        (torch == 3 && skipped == 0) || (torch == 1 && skipped == 1),
        "{table}"
    );
    // Generated images stay; the weights of the tiny models are small.
    for m in ["tiny-sdxl", "tiny-ssd-1b", "tiny-vega"] {
        assert!(out.join(format!("images/{m}.png")).is_file());
    }
}
